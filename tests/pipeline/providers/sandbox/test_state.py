"""The sandbox's jobs: scheduling, cancelling, limits and billing, with rendering faked out.

Rendering is replaced by a stub that writes a few bytes (the real ffmpeg render is covered by
``test_render.py``); ``latency_scale=0`` makes jobs due at once, a large scale keeps them queued.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pipeline.errors import MediaError
from pipeline.pricing import Tier, request_cost
from pipeline.providers import wire
from pipeline.providers.sandbox import state as state_module
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.inputs import KlingInput
from pipeline.providers.sandbox.render import RenderJob, frame_size
from pipeline.providers.sandbox.state import SandboxState, fingerprint_of

T = TypeVar("T")
MODEL = "kling/kling-3.0/standard/text-to-video"
#: Latency scales: jobs due at once, or still queued for seconds (never waited for).
NOW = 0.0
LATER = 1.0


def kling_input(prompt: str = "a kite", **changes: Any) -> KlingInput:
    values: dict[str, Any] = {
        "tier": Tier.STANDARD,
        "mode": "text-to-video",
        "prompt": prompt,
        "duration": 3,
        "aspect_ratio": "16:9",
        "cfg_scale": 0.5,
        "generate_audio": False,
        "negative_prompt": None,
        "seed": None,
        "start_image_url": None,
        "end_image_url": None,
        **changes,
    }
    return KlingInput(**values)


class FakeRender:
    """Stands in for the ffmpeg render: records each job, writes a stub file or fails."""

    def __init__(self) -> None:
        self.jobs: list[RenderJob] = []
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, job: RenderJob, out: Path, *, timeout: float) -> Path:
        with self._lock:
            self.jobs.append(job)
        if self.fail:
            raise MediaError("ffmpeg exploded")
        out.write_bytes(b"not really an mp4")
        return out


@pytest.fixture
def fake_render(monkeypatch: pytest.MonkeyPatch) -> FakeRender:
    fake = FakeRender()
    monkeypatch.setattr(state_module, "render", fake)
    return fake


def with_state(
    tmp_path: Path, fn: Callable[[SandboxState], Awaitable[T]], **config: Any
) -> tuple[T, SandboxState]:
    """Run ``await fn(state)`` on a fresh event loop, closing the state before the loop ends."""
    state = SandboxState(SandboxConfig(**{"latency_scale": NOW, **config}), tmp_path)

    async def go() -> T:
        try:
            return await fn(state)
        finally:
            await state.close()

    return asyncio.run(go()), state


async def finished(job: state_module.Job) -> None:
    assert job.task is not None
    await job.task


def test_a_job_completes_once_rendered_and_is_charged_once(tmp_path: Path, fake_render: FakeRender) -> None:
    async def scenario(state: SandboxState) -> state_module.Job:
        job = state.accept(MODEL, kling_input(generate_audio=True), (None, None))
        assert job.status == wire.IN_QUEUE and job.in_flight
        await finished(job)
        return job

    job, state = with_state(tmp_path, scenario)

    assert job.status == wire.COMPLETED and not job.in_flight and job.finished_at is not None
    assert job.video_name is not None and (state.videos_dir / job.video_name).is_file()
    [entry] = state.ledger.entries()
    assert entry.request_id == job.request_id and entry.model_id == MODEL
    assert entry.charged and entry.charge_count == 1 and entry.status == "completed"
    assert entry.cost_usd == request_cost(Tier.STANDARD, 3, True) == job.cost
    assert entry.fingerprint == fingerprint_of(job.inp)
    assert state.max_in_flight_seen == 1 and len(state.accepted_times) == 1


def test_an_injected_failure_is_never_charged_nor_rendered(tmp_path: Path, fake_render: FakeRender) -> None:
    async def scenario(state: SandboxState) -> state_module.Job:
        job = state.accept(MODEL, kling_input(), (None, None))
        await finished(job)
        return job

    job, state = with_state(tmp_path, scenario, faults=FaultConfig(fail=1.0))

    assert job.status == wire.FAILED and job.error == "sandbox: injected generation failure"
    assert fake_render.jobs == []
    [entry] = state.ledger.entries()
    assert entry.status == "failed" and not entry.charged
    assert state.committed_usd() == Decimal(0)


def test_a_failed_render_fails_the_job_and_the_next_request_renders_again(
    tmp_path: Path, fake_render: FakeRender
) -> None:
    fake_render.fail = True

    async def scenario(state: SandboxState) -> list[state_module.Job]:
        first = state.accept(MODEL, kling_input(), (None, None))
        await finished(first)
        fake_render.fail = False
        second = state.accept(MODEL, kling_input(), (None, None))
        await finished(second)
        return [first, second]

    (first, second), state = with_state(tmp_path, scenario)

    assert first.status == wire.FAILED and first.error is not None and "ffmpeg exploded" in first.error
    assert second.status == wire.COMPLETED  # a failed render is not cached
    assert len(fake_render.jobs) == 2
    assert [(e.status, e.charged) for e in state.ledger.entries()] == [("failed", False), ("completed", True)]


def test_identical_requests_share_one_render_but_are_billed_separately(
    tmp_path: Path, fake_render: FakeRender
) -> None:
    async def scenario(state: SandboxState) -> list[state_module.Job]:
        jobs = [state.accept(MODEL, kling_input(seed=7), (None, None)) for _ in range(3)]
        for job in jobs:
            await finished(job)
        return jobs

    jobs, state = with_state(tmp_path, scenario, render_scale=0.1)

    assert len(fake_render.jobs) == 1
    assert len({j.request_id for j in jobs}) == 3 and len({j.video_name for j in jobs}) == 1
    assert [e.charge_count for e in state.ledger.entries()] == [1, 1, 1]
    [rendered] = fake_render.jobs
    assert rendered.seed == 7  # the request's seed, when it gave one
    assert (rendered.width, rendered.height) == frame_size(Tier.STANDARD, "16:9", 0.1)


def test_without_a_seed_the_render_seed_comes_from_the_fingerprint(
    tmp_path: Path, fake_render: FakeRender
) -> None:
    async def scenario(state: SandboxState) -> state_module.Job:
        job = state.accept(MODEL, kling_input(), (None, None))
        await finished(job)
        return job

    job, _ = with_state(tmp_path, scenario)

    assert fake_render.jobs[0].seed == int(job.fingerprint, 16) % 2**31


def test_a_queued_job_can_be_cancelled_once_and_is_not_billed(
    tmp_path: Path, fake_render: FakeRender
) -> None:
    async def scenario(state: SandboxState) -> tuple[bool, bool, state_module.Job]:
        job = state.accept(MODEL, kling_input(), (None, None))
        committed = state.committed_usd()
        assert committed == job.cost
        return state.cancel(job), state.cancel(job), job

    (first, again, job), state = with_state(tmp_path, scenario, latency_scale=LATER)

    assert (first, again) == (True, False)
    assert job.status == wire.CANCELLED and job.task is not None and job.task.cancelled()
    [entry] = state.ledger.entries()
    assert entry.status == "cancelled" and not entry.charged
    assert state.committed_usd() == Decimal(0)
    assert [e["event"] for e in state.ledger.events()] == ["accepted", "cancelled"]


def test_a_completed_job_cannot_be_cancelled(tmp_path: Path, fake_render: FakeRender) -> None:
    async def scenario(state: SandboxState) -> tuple[bool, state_module.Job]:
        job = state.accept(MODEL, kling_input(), (None, None))
        await finished(job)
        return state.cancel(job), job

    (cancelled, job), state = with_state(tmp_path, scenario)

    assert cancelled is False and job.status == wire.COMPLETED
    assert state.ledger.entries()[0].charged


def test_queue_positions_follow_the_slots(tmp_path: Path, fake_render: FakeRender) -> None:
    async def scenario(state: SandboxState) -> list[int | None]:
        first = state.accept(MODEL, kling_input("one"), (None, None))
        second = state.accept(MODEL, kling_input("two"), (None, None))
        third = state.accept(MODEL, kling_input("three"), (None, None))
        before = [state.queue_position(j) for j in (first, second, third)]
        state.cancel(first)
        after = [state.queue_position(j) for j in (first, second, third)]
        return before + after

    positions, _ = with_state(tmp_path, scenario, latency_scale=LATER, slots=1)

    # One slot: each job starts when the one before it is done; a cancelled job has no place.
    assert positions == [1, 2, 3, None, 1, 2]


def test_submits_wait_for_the_in_flight_limit_and_the_rate(tmp_path: Path, fake_render: FakeRender) -> None:
    async def scenario(state: SandboxState) -> tuple[float, float]:
        assert state.submit_wait() == 0.0
        state.accept(MODEL, kling_input(), (None, None))
        return state.submit_wait(), state.submit_wait()

    (full, again), _ = with_state(tmp_path, scenario, latency_scale=LATER, max_in_flight=1)

    assert full >= 0.05 and again >= 0.05  # one request in flight already: no room

    bucket_state = SandboxState(SandboxConfig(submit_rate_per_s=0.001, submit_burst=2), tmp_path / "b")
    assert [bucket_state.submit_wait() for _ in range(2)] == [0.0, 0.0]
    assert bucket_state.submit_wait() > 0.0
    asyncio.run(bucket_state.close())


def test_the_fingerprint_is_stable_and_follows_every_input() -> None:
    base = kling_input()

    assert fingerprint_of(base) == fingerprint_of(kling_input())
    assert len(fingerprint_of(base)) == 8
    for change in ({"prompt": "a boat"}, {"seed": 1}, {"generate_audio": True}, {"tier": Tier.PRO}):
        assert fingerprint_of(kling_input(**change)) != fingerprint_of(base), change


def test_a_fal_request_bills_by_fal_s_table_and_renders_its_storyboard(
    tmp_path: Path, fake_render: FakeRender
) -> None:
    board = kling_input(
        duration=5,
        generate_audio=True,
        shots=(("@Element1 waves", 2), ("sea", 3)),
        elements=(("Element1", ("data:image/png;sha256,ab",)),),
        dialect="fal",
    )
    shown = (("Element1", (tmp_path / "e.png",)),)

    async def scenario(state: SandboxState) -> state_module.Job:
        job = state.accept(
            "fal-ai/kling-video/v3/standard/text-to-video", board, (None, None), elements=shown, voice=True
        )
        await finished(job)
        return job

    job, state = with_state(tmp_path, scenario)
    # fal's standard voice-control rate (pipeline.pricing's fal table): 5 s × $0.154.
    assert job.cost == Decimal("0.770")
    [entry] = state.ledger.entries()
    assert entry.dialect == "fal" and entry.cost_usd == Decimal("0.770")
    [rendered] = fake_render.jobs
    assert rendered.shots == board.shots and rendered.elements == shown


def test_a_storyboard_changes_the_fingerprint_but_runcomfy_s_stays() -> None:
    base = kling_input()
    assert fingerprint_of(kling_input(shots=(("a", 3),))) != fingerprint_of(base)
    assert fingerprint_of(kling_input(dialect="fal")) != fingerprint_of(base)
    assert fingerprint_of(base) == fingerprint_of(kling_input(dialect="runcomfy"))
