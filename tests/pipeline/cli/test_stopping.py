"""Stopping a run (:mod:`pipeline.cli.stopping`): the Stopper with a fake session, no real signals.

``_leave`` (flush, kill the children, ``os._exit``) is replaced by one that raises, so that the
test process neither exits nor signals anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NoReturn, cast

import pytest

from pipeline.cli import stopping
from pipeline.errors import EXIT_INTERRUPTED
from pipeline.render.runlock import CancelRequest, SubmitGate, request_cancel
from pipeline.render.settings import RunSettings

if TYPE_CHECKING:
    from pipeline.render.session import RunSession


class Left(Exception):
    """Raised instead of leaving the process."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@pytest.fixture
def left(monkeypatch: pytest.MonkeyPatch) -> None:
    def leave(code: int) -> NoReturn:
        raise Left(code)

    monkeypatch.setattr(stopping, "_leave", leave)


class _Limits:
    def __init__(self) -> None:
        self.turns = 0

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        yield

    def in_flight(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._slot()

    async def before_submit(self) -> None:
        self.turns += 1

    def slow_down(self, seconds: float) -> None:
        pass


class _Engine:
    def __init__(self, live: dict[str, str]) -> None:
        self.limits = SubmitGate(_Limits())
        self.live = dict(live)
        self.cancel_calls = 0

    async def cancel_live(self) -> tuple[list[str], list[str]]:
        self.cancel_calls += 1
        done = list(self.live.values())
        self.live.clear()
        return done, []


def _session(run_id: str, live: dict[str, str]) -> tuple[RunSession, _Engine]:
    engine = _Engine(live)
    store = SimpleNamespace(jobs_of=lambda run: [])
    session: Any = SimpleNamespace(engine=engine, store=store, run_id=run_id)
    return cast("RunSession", session), engine


def _settings(tmp_path: Path) -> RunSettings:
    return RunSettings(runs_dir=tmp_path / "runs", store_url=None)


@pytest.mark.usefixtures("left")
def test_stop_closes_the_gate_cancels_queued_and_exits_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session, engine = _session("r1", {"a": "req-1", "b": "req-2"})
    stopper = stopping.Stopper([session], _settings(tmp_path), "r1")
    with pytest.raises(Left) as exc:
        asyncio.run(stopper.stop(grace=2.0))
    assert exc.value.code == EXIT_INTERRUPTED
    assert engine.limits.closed  # no new submit
    assert engine.cancel_calls == 1
    err = " ".join(capsys.readouterr().err.split())  # rich wraps at the terminal width
    assert "interrupted: 2 queued request(s) cancelled" in err
    assert "resume run r1" in err
    # No job store was ever created: nothing may be billed, and stopping did not create one.
    assert "may still complete" not in err
    assert not (tmp_path / "runs" / "r1" / "jobs.db").exists()


@pytest.mark.usefixtures("left")
def test_cancel_with_keep_requests_leaves_them_at_the_provider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path)
    run_dir = settings.runs_dir / "r2"
    run_dir.mkdir(parents=True)
    request_cancel(run_dir, CancelRequest(keep_requests=True))
    session, engine = _session("r2", {"a": "req-1"})
    with pytest.raises(Left) as exc:
        asyncio.run(stopping.Stopper([session], settings, "r2").stop(grace=2.0))
    assert exc.value.code == EXIT_INTERRUPTED
    assert engine.limits.closed
    assert engine.cancel_calls == 0
    assert engine.live == {"a": "req-1"}
    err = " ".join(capsys.readouterr().err.split())
    assert "cancelled (klingflow cancel): 0 queued request(s) cancelled" in err
    assert "--keep-requests" in err


@pytest.mark.usefixtures("left")
def test_stop_without_a_session_still_leaves_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Left) as exc:
        asyncio.run(stopping.Stopper([], _settings(tmp_path), "r3").stop(grace=1.0))
    assert exc.value.code == EXIT_INTERRUPTED
    assert "0 queued request(s) cancelled" in capsys.readouterr().err


@pytest.mark.usefixtures("left")
def test_a_second_signal_leaves_at_once(tmp_path: Path) -> None:
    stopper = stopping.Stopper([], _settings(tmp_path), "r4")
    # A stop already under way (any task object will do: it is only tested for None).
    stopper.task = cast("asyncio.Task[None]", object())
    with pytest.raises(Left) as exc:
        stopper(signal.SIGINT)
    assert exc.value.code == EXIT_INTERRUPTED


def test_submit_gate_lets_nothing_through_once_closed() -> None:
    inner = _Limits()
    gate = SubmitGate(inner)

    async def scenario() -> bool:
        await gate.before_submit()
        gate.close()
        blocked = asyncio.ensure_future(gate.before_submit())
        for _ in range(10):  # let it run as far as it can: it must stay waiting
            await asyncio.sleep(0)
        waiting = not blocked.done()
        blocked.cancel()
        return waiting

    assert asyncio.run(scenario())
    assert inner.turns == 1  # the inner limits were not even asked after close


def test_interrupt_before_start_is_ctrl_c() -> None:
    with pytest.raises(KeyboardInterrupt):
        stopping.interrupt_before_start(signal.SIGTERM, None)


def test_mark_stopped_before_the_job_store_exists_bills_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert stopping._mark_stopped(settings, "never-started", "interrupted") == []
    assert not (settings.runs_dir / "never-started").exists()


def test_stop_local_run_without_a_holder_is_false_and_requests_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    run_dir = settings.runs_dir / "idle"
    run_dir.mkdir(parents=True)
    assert stopping.stop_local_run(settings, "idle", keep_requests=False, wait=0.5) is False
    assert list(run_dir.iterdir()) == []  # no cancel request left for a later run to misread


def test_term_grace_fits_docker_stop() -> None:
    # docker stop waits 10 s before SIGKILL; the docstring promises the process is gone within 5 s.
    assert stopping.TERM_GRACE_S + stopping.LEAVE_MARGIN_S <= 5.0
    assert stopping.INTERRUPT_GRACE_S > stopping.TERM_GRACE_S
