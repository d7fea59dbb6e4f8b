"""Stopping a run: what SIGINT and SIGTERM do to ``klingflow run``, and how ``klingflow cancel``
stops the process rendering a run on this machine.

Both end the same way (:class:`Stopper`): no new submit, queued requests cancelled, the state
written, what may keep billing listed, exit 130. ``cancel`` finds the process through the run's
lock file (pid and start time, :mod:`pipeline.render.runlock`) and sends it SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

from pipeline.errors import EXIT_INTERRUPTED, KlingflowError
from pipeline.render.settings import RunSettings
from pipeline.store.jobs import JobStatus, JobStore

if TYPE_CHECKING:
    from pipeline.render.session import RunSession

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


#: How long SIGTERM (``timeout``, ``docker stop``, ``klingflow cancel``) may take to cancel what is
#: queued before the process leaves regardless: it must be gone within 5 s (``docker stop``
#: waits 10 s before SIGKILL).
TERM_GRACE_S = 3.5
#: Ctrl-C at a terminal: a person watching, who can press it again to leave at once.
INTERRUPT_GRACE_S = 30.0
#: After the grace, this long for the report and the children before the process just leaves.
LEAVE_MARGIN_S = 1.0


class Stopper:
    """What SIGINT and SIGTERM do to a run: the same thing, Ctrl-C's.

    No new submit (the run's :class:`SubmitGate` closes), the requests still queued at the
    provider cancelled (unless ``klingflow cancel --keep-requests`` asked otherwise), the run
    marked ``cancelled`` (``klingflow cancel``) or ``interrupted`` in the job store, a report
    of what may keep billing, the children stopped, and exit 130. The job store is already
    durable, so nothing is lost by leaving without waiting for Prefect, which can hang: a
    terminal's Ctrl-C also stops Prefect's ephemeral server (same process group) while the flow
    still reports to it. A second signal leaves at once, and a watchdog leaves when the grace
    is over, whatever is still being cancelled.
    """

    def __init__(self, sessions: list[RunSession], settings: RunSettings, run_id: str) -> None:
        self.sessions = sessions
        self.settings = settings
        self.run_id = run_id
        self.task: asyncio.Task[None] | None = None

    def __call__(self, sig: signal.Signals) -> None:
        if self.task is not None:  # a second signal: leave at once (the job store is durable)
            _leave(EXIT_INTERRUPTED)
        grace = TERM_GRACE_S if sig == signal.SIGTERM else INTERRUPT_GRACE_S
        watchdog = threading.Timer(grace + LEAVE_MARGIN_S, self._too_slow)
        watchdog.daemon = True
        watchdog.start()
        self.task = asyncio.get_running_loop().create_task(self.stop(grace))

    def _too_slow(self) -> None:
        _err.print(f"\nstopping run {self.run_id} took too long: leaving now (rerun to resume)")
        _leave(EXIT_INTERRUPTED)

    async def stop(self, grace: float) -> None:
        """Stop the run within ``grace`` seconds (see the class), then leave the process."""
        from pipeline.render.runlock import cancel_requested

        request = cancel_requested(self.settings.runs_dir / self.run_id)
        session = self.sessions[-1] if self.sessions else None
        keep = request is not None and request.keep_requests
        state = "cancelled" if request is not None else "interrupted"
        cancelled, billing = await wind_down(
            session, self.settings, self.run_id, state, grace, cancel_queued=not keep
        )
        how = "cancelled (klingflow cancel)" if request is not None else "interrupted"
        kept = " (--keep-requests: left at the provider)" if keep else ""
        _err.print(
            f"\n{how}: {len(cancelled)} queued request(s) cancelled{kept}; run the same command "
            f"again to resume run {self.run_id}"
        )
        report_billing(billing)
        _leave(EXIT_INTERRUPTED)


async def wind_down(
    session: RunSession | None,
    settings: RunSettings,
    run_id: str,
    state: str,
    grace: float,
    *,
    cancel_queued: bool = True,
) -> tuple[list[str], list[str]]:
    """Within ``grace`` seconds: no new submit (the run's :class:`SubmitGate` closes), the
    requests still queued at the provider cancelled (unless not ``cancel_queued``), the run's
    ``state`` written. Returns (the request ids cancelled, a line for each request that was
    submitted and may still complete and be billed)."""
    from pipeline.render.runlock import SubmitGate

    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    cancelled: list[str] = []
    if session is not None:
        if isinstance(session.engine.limits, SubmitGate):
            session.engine.limits.close()
        if cancel_queued:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_cancel_queued(session, cancelled), max(deadline - loop.time(), 0.1))
    billing: list[str] = []
    with contextlib.suppress(TimeoutError, KlingflowError, OSError):
        billing = await asyncio.wait_for(
            asyncio.to_thread(_mark_stopped, settings, run_id, state),
            max(deadline - loop.time(), 0.5),
        )
    return cancelled, billing


def report_billing(billing: list[str]) -> None:
    """Say which requests were submitted and may still complete and be billed (if any)."""
    if billing:
        _err.print(f"{len(billing)} request(s) were submitted and may still complete and be billed:")
        for line in billing:
            _err.print(f"  {line}")


async def _cancel_queued(session: RunSession, cancelled: list[str]) -> None:
    """Cancel the run's live requests, including those whose submit was already under way when
    the gate closed (their answers come in after): until no submit is left in flight."""
    engine = session.engine
    tried: set[str] = set()
    while True:
        if set(engine.live.values()) - tried:
            tried |= set(engine.live.values())
            done, _ = await engine.cancel_live()
            cancelled.extend(done)
        jobs = await asyncio.to_thread(session.store.jobs_of, session.run_id)
        if not any(j.status == JobStatus.SUBMITTING for j in jobs) and not set(engine.live.values()) - tried:
            return
        await asyncio.sleep(0.1)


def interrupt_before_start(signum: int, frame: object) -> None:
    """SIGTERM before the event loop runs: what Ctrl-C is then (KeyboardInterrupt, exit 130)."""
    raise KeyboardInterrupt


def _mark_stopped(settings: RunSettings, run_id: str, state: str) -> list[str]:
    """Record how the run stopped; return what it left that may still be billed."""
    db = settings.runs_dir / run_id / "jobs.db"
    if settings.store_url is None and not db.is_file():
        return []  # stopped before its job store existed: nothing was bought
    store = JobStore.open(settings.store_url or f"sqlite:///{db}")
    try:
        with contextlib.suppress(Exception):  # a run stopped before its ledger row existed
            store.set_run_status(run_id, state)
        return _billing_lines(store, run_id)
    finally:
        store.close()


def _leave(code: int) -> NoReturn:
    """Flush, stop this process's children, and exit at once with ``code``."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    _stop_children()
    os._exit(code)


def _stop_children() -> None:
    """Kill this process's children: Prefect's ephemeral API server, ffmpeg.

    SIGKILL, not SIGTERM: what they hold is disposable (an ephemeral server's SQLite survives a
    kill; an ffmpeg's output is a temporary piece), and a server asked to stop logs its own
    shutdown errors into our terminal after we have left.
    """
    from pipeline.processes import descendants

    for pid in descendants(os.getpid(), direct_only=True):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _billing_lines(store: JobStore, run_id: str) -> list[str]:
    return [
        f"{j.narrative}/{j.variant}/{j.pass_} segment {j.segment}: request {j.request_id or '(answer lost)'}"
        for j in store.jobs_of(run_id)
        if j.status in (JobStatus.SUBMITTED, JobStatus.UNKNOWN, JobStatus.SUBMITTING)
    ]


def stop_local_run(settings: RunSettings, run: str, *, keep_requests: bool, wait: float) -> bool:
    """SIGTERM the process on this machine that holds ``run``'s lock; SIGKILL it if it has not
    stopped within ``wait`` seconds. True if there was such a process."""
    from pipeline.processes import is_running, signal_process
    from pipeline.render.runlock import CancelRequest, read_holder, request_cancel

    run_dir = settings.runs_dir / run
    holder = read_holder(run_dir)
    if holder is None:
        return False
    # Read by the run as it stops: "cancelled" in its state, and whether to keep its requests.
    request_cancel(run_dir, CancelRequest(keep_requests=keep_requests))
    if not signal_process(holder.pid, holder.started, signal.SIGTERM):
        return False
    _out.print(f"run {run}: {holder} is rendering it: sent SIGTERM (it stops as on Ctrl-C)")
    deadline = time.monotonic() + max(wait, 0.5)
    while is_running(holder.pid, holder.started) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_running(holder.pid, holder.started):
        signal_process(holder.pid, holder.started, signal.SIGKILL)
        _out.print(
            f"process {holder.pid} did not stop within {wait:g} s: killed (SIGKILL; the job store "
            "is durable, a rerun resumes)"
        )
    else:
        kept = "left its requests at the provider" if keep_requests else "cancelled its queued requests"
        _out.print(f"process {holder.pid} stopped: it submits nothing more, {kept}, and exited 130")
    return True
