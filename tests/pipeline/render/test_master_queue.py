"""pipeline.render.master_queue: masters start as their clips arrive; CPU work is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pipeline.render.engine import Engine, JobResult
from pipeline.render.master_queue import CpuSlots, GroupKey, MasterQueue


@dataclass(frozen=True)
class _Request:
    narrative: str
    variant: str
    segment: int


def _requests() -> list[Any]:
    return [_Request("story", v, s) for v in ("a", "b") for s in range(3)]


def _result(request: Any, ok: bool = True) -> JobResult:
    return cast(JobResult, SimpleNamespace(request=request, clip=object() if ok else None))


def test_a_master_starts_when_its_last_clip_arrives_with_its_clips_in_segment_order() -> None:
    started: dict[GroupKey, list[int]] = {}

    async def start(key: GroupKey, jobs: list[JobResult], found: Any) -> str:
        started[key] = [j.request.segment for j in jobs]
        return f"master {key}"

    async def scenario() -> None:
        requests = _requests()
        queue = MasterQueue(requests, start)
        # Variant a finishes out of order; variant b is still generating.
        for request in (requests[2], requests[0], requests[3]):
            queue.arrived(_result(request))
        assert not queue.started
        queue.arrived(_result(requests[1]))
        assert set(queue.started) == {("story", "a")}
        assert await queue.started[("story", "a")] == "master ('story', 'a')"
        assert started == {("story", "a"): [0, 1, 2]}

    asyncio.run(scenario())


def test_a_group_with_a_failed_job_is_left_to_the_caller() -> None:
    async def start(key: GroupKey, jobs: list[JobResult], found: Any) -> None:
        raise AssertionError("must not start")

    async def scenario() -> None:
        requests = _requests()[:3]
        queue = MasterQueue(requests, start)
        queue.arrived(_result(requests[0]))
        queue.arrived(_result(requests[1], ok=False))
        queue.arrived(_result(requests[2]))
        queue.arrived(_result(_Request("other", "z", 0)))  # not of this pass: ignored
        assert not queue.started

    asyncio.run(scenario())


def test_the_wrapper_runs_each_job_through_the_previous_one_and_restores_it() -> None:
    seen: list[str] = []

    async def previous(request: Any, work: Callable[[], Awaitable[JobResult]]) -> JobResult:
        seen.append(f"previous {request.segment}")
        return await work()

    async def start(key: GroupKey, jobs: list[JobResult], found: Any) -> int:
        return len(jobs)

    async def scenario() -> None:
        requests = _requests()[:3]
        engine = cast(Engine, SimpleNamespace(wrap=previous))
        queue = MasterQueue(requests, start)
        with queue.watching(engine):
            assert engine.wrap is not previous
            wrap = engine.wrap
            assert wrap is not None
            for request in requests:

                async def job(request: Any = request) -> JobResult:
                    return _result(request)

                await wrap(request, job)
        assert engine.wrap is previous
        assert seen == ["previous 0", "previous 1", "previous 2"]
        assert await queue.started[("story", "a")] == 3

    asyncio.run(scenario())


def test_an_error_in_the_pass_stops_the_masters_started_early() -> None:
    async def scenario() -> None:
        hold = asyncio.Event()

        async def start(key: GroupKey, jobs: list[JobResult], found: Any) -> None:
            await hold.wait()

        requests = _requests()[:3]
        engine = cast(Engine, SimpleNamespace(wrap=None))
        queue = MasterQueue(requests, start)

        def failing_pass() -> None:
            with queue.watching(engine):
                for request in requests:
                    queue.arrived(_result(request))
                raise RuntimeError("no balance")

        with pytest.raises(RuntimeError, match="no balance"):
            failing_pass()
        task = queue.started[("story", "a")]
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.wrap is None

    asyncio.run(scenario())


def test_each_clip_is_inspected_as_it_arrives_and_its_master_gets_the_findings() -> None:
    inspected: list[int] = []

    async def inspect(job: JobResult) -> Any:
        inspected.append(job.request.segment)
        return f"found {job.request.segment}"

    async def start(key: GroupKey, jobs: list[JobResult], found: Any) -> Any:
        return found

    async def scenario() -> None:
        requests = _requests()[:3]
        queue = MasterQueue(requests, start, inspect=inspect)
        for request in (requests[1], requests[2]):
            queue.arrived(_result(request))
        await asyncio.sleep(0)
        assert inspected == [1, 2]  # inspected on arrival, before the group is complete
        queue.arrived(_result(requests[0]))
        assert await queue.started[("story", "a")] == ["found 0", "found 1", "found 2"]

    asyncio.run(scenario())


def test_cpu_slots_bound_the_work_running_at_once() -> None:
    slots = CpuSlots(2)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1

    async def scenario() -> None:
        await asyncio.gather(*(slots.run(work) for _ in range(6)))

    asyncio.run(scenario())
    assert peak == 2
    assert CpuSlots().slots >= 1
