"""Masters while generation runs: each master starts as soon as its own clips are in.

A pass's masters used to wait for the whole pass: in a 40-request run the last charge came at
32 s and 32 s more went on masters, contact sheets and probes with nothing generating. A
:class:`MasterQueue` watches each job of the pass finish (through the engine's job wrapper) and
starts the master of a narrative/variant the moment the last of its jobs has a verified clip,
while the other requests still generate. A group with a failed job is left to the caller, which
reports it after the pass as before.

Each clip is also inspected as it arrives (``inspect``: its probe, the picture and sound
detectors of its QC and its contact-sheet row), so a master's own check only adds its joins and
its audio (:func:`~pipeline.media.qc_master.check_master`) and its sheet only stacks rows.

CPU-heavy work is bounded by :class:`CpuSlots`: at most one master (ffmpeg, QC) per core at a
time, so memory stays flat however many masters a run has, and the provider's polling keeps its
share of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from pipeline.planning.plan import PlannedRequest
from pipeline.render.engine import Engine, JobResult, JobWrapper
from pipeline.render.masters import ClipInspection

#: A master's group: (narrative id, variant id).
GroupKey = tuple[str, str]
_T = TypeVar("_T")


class CpuSlots:
    """An asyncio bound on concurrent CPU-heavy work: one slot per core unless told otherwise.

    An asyncio semaphore (not a thread one): a master waiting for a slot holds no worker thread of
    the default executor, which the job store's calls need.
    """

    def __init__(self, slots: int | None = None) -> None:
        self.slots = max(1, slots if slots is not None else (os.cpu_count() or 1))
        self._semaphore: asyncio.Semaphore | None = None

    async def run(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """Await ``work()`` once a slot is free."""
        if self._semaphore is None:  # made lazily, inside the running loop
            self._semaphore = asyncio.Semaphore(self.slots)
        async with self._semaphore:
            return await work()


#: What a clip's arrival prepared (None: it could not be inspected; the master does it all).
Inspection = ClipInspection | None


class MasterQueue(Generic[_T]):
    """Starts ``start(key, jobs, inspections)`` for each group of ``requests`` when all its jobs
    have a clip (and, with ``inspect``, every clip has been inspected).

    ``jobs`` come in the order of ``requests`` (segment order), whatever order they finished in;
    ``inspections`` in the same order, or None without ``inspect``.
    """

    def __init__(
        self,
        requests: Sequence[PlannedRequest],
        start: Callable[[GroupKey, list[JobResult], list[Inspection] | None], Awaitable[_T]],
        inspect: Callable[[JobResult], Awaitable[Inspection]] | None = None,
    ) -> None:
        self._expected = Counter((r.narrative, r.variant) for r in requests)
        self._arrived: dict[GroupKey, list[JobResult]] = {}
        self._start = start
        self._inspect = inspect
        self._inspections: dict[int, asyncio.Future[Inspection]] = {}
        self._tasks: dict[GroupKey, asyncio.Future[_T]] = {}

    @property
    def started(self) -> Mapping[GroupKey, asyncio.Future[_T]]:
        """The masters already started, by group."""
        return self._tasks

    def arrived(self, result: JobResult) -> None:
        """Record one finished job; start its group's master when that was the last one."""
        request = result.request
        key = (request.narrative, request.variant)
        if key not in self._expected:
            return
        if self._inspect is not None and result.clip is not None:
            self._inspections[id(result)] = asyncio.ensure_future(self._inspect(result))
        group = self._arrived.setdefault(key, [])
        group.append(result)
        if len(group) == self._expected[key] and all(j.clip is not None for j in group):
            # Segment order (a group is one narrative, variant and pass), whatever order they came in.
            group.sort(key=lambda j: j.request.segment)
            self._tasks[key] = asyncio.ensure_future(self._start_inspected(key, list(group)))

    async def _start_inspected(self, key: GroupKey, group: list[JobResult]) -> _T:
        if self._inspect is None:
            return await self._start(key, group, None)
        found = list(await asyncio.gather(*(self._inspections[id(j)] for j in group)))
        return await self._start(key, group, found)

    def wrapper(self, previous: JobWrapper | None) -> JobWrapper:
        """A job wrapper that runs each job (through ``previous`` when there is one) and records it."""

        async def wrapped(request: PlannedRequest, work: Callable[[], Awaitable[JobResult]]) -> JobResult:
            result = await (previous(request, work) if previous is not None else work())
            self.arrived(result)
            return result

        return wrapped

    @contextlib.contextmanager
    def watching(self, engine: Engine) -> Iterator[MasterQueue[_T]]:
        """Watch ``engine``'s jobs for the duration; on an error, stop the masters started early."""
        previous = engine.wrap
        engine.wrap = self.wrapper(previous)
        try:
            yield self
        except BaseException:
            for task in self._tasks.values():
                task.cancel()
            for inspection in self._inspections.values():
                inspection.cancel()
            raise
        finally:
            engine.wrap = previous
