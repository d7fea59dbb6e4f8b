"""Waiting for a request to finish without hammering the API.

The official CLI polls every 2 s; a 75 s generation then costs ~38 status calls. Here the first
look is timed from the expected generation time (tier, duration, audio, queue position: see
:mod:`pipeline.providers.latency`), the estimate is refreshed from what each status answer says,
then the looks come at an even step (a small fraction of the render time) through the window
where the request is likely to finish — the render time varies by about ±30 % — and once a
request is past that window the interval grows geometrically up to a cap. The whole wait is
capped too (:class:`~pipeline.errors.GenerationTimeout`). Every status call is counted.

Why even steps through the window rather than one look at the expected time: a finish is about
as likely anywhere in it, and the time between the finish and the look that sees it (lateness)
holds an in-flight slot for nothing. Against the sandbox's spread (``scripts/bench_polling.py``,
``scripts/bench_throughput.py``) this halves the lateness for ~1.5 more looks per request.

A provider that can (:class:`ResultPoller`) is polled through ``/result?include_cost=true``, as
the partner nodes poll (``runcomfy/execution.py``): the look that sees the request finished
already carries its output and cost, which saves the separate result call. After a look that
says *queued*, the next look reads the status instead, for its fresh queue position.

Answers that cannot be read (:class:`~pipeline.providers.wire.UnreadableAnswer`: garbage, or an
HTTP 200 with a server-side ``error_code``) end the wait after :data:`MAX_UNREADABLE_ANSWERS` in
a row, like a timeout: the request may still be running and billed, so it stays followed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from pipeline.errors import GenerationTimeout, RateLimited, TransportError, UpstreamError
from pipeline.generation import GenerationSpec
from pipeline.providers.base import JobState, Provider, ResultInfo, StatusInfo, Submission
from pipeline.providers.latency import LatencyModel
from pipeline.providers.wire import UnreadableAnswer

StatusCallback = Callable[[StatusInfo], None]

#: Unreadable answers in a row (each after the adapter's own retries) that end a wait.
MAX_UNREADABLE_ANSWERS: Final = 5


@runtime_checkable
class ResultPoller(Protocol):
    """A provider whose result endpoint also answers while the request is unfinished."""

    async def poll_result(self, request_id: str) -> ResultInfo:
        """One look at the request through its result (state, and output and cost once done)."""
        ...


def unreadable_timeout(request_id: str, count: int, last: Exception, waited_s: float) -> GenerationTimeout:
    """The error ending a wait after ``count`` unreadable answers in a row (raise it ``from last``)."""
    return GenerationTimeout(
        f"request {request_id}: {count} answers in a row could not be read (last: {last}); stopped "
        f"waiting after {waited_s:.0f} s. The request may still be running and billed: it stays "
        "submitted, and the next run follows it again",
        request_id=request_id,
    )


@dataclass(frozen=True)
class PollPolicy:
    """When to look. Durations are provider seconds, multiplied by ``latency.scale``."""

    latency: LatencyModel = field(default_factory=LatencyModel)
    #: The first look happens at this fraction of the expected total time (the earliest a
    #: render ~30 % faster than expected finishes).
    first_fraction: float = 0.8
    min_interval_s: float = 2.0
    max_interval_s: float = 60.0
    #: The step between looks in the likely window, as a fraction of the expected render time.
    tail_fraction: float = 0.06
    #: The window ends this fraction of the render time after the expected completion (the
    #: latest a render ~30 % slower than expected finishes); past it, steps grow × ``tail_factor``.
    window_fraction: float = 0.35
    tail_factor: float = 1.5
    #: Give up waiting (the request keeps running at the provider) after this long.
    max_wait_s: float = 3600.0

    @property
    def min_interval(self) -> float:
        """Shortest pause between two status calls, in real seconds."""
        return self.min_interval_s * self.latency.scale

    @property
    def max_interval(self) -> float:
        """Longest pause between two status calls, in real seconds."""
        return self.max_interval_s * self.latency.scale

    @property
    def max_wait(self) -> float:
        """The overall cap on waiting, in real seconds."""
        return self.max_wait_s * self.latency.scale

    def clamp(self, seconds: float) -> float:
        """``seconds`` kept between the minimum and maximum interval."""
        return min(max(seconds, self.min_interval), self.max_interval)


@dataclass(frozen=True)
class WaitOutcome:
    """How a wait ended: the terminal status, what it cost, and when we saw it."""

    status: StatusInfo
    status_calls: int
    transient_errors: int
    seen_at: float  # time.time() when the terminal status arrived
    waited_s: float
    #: The terminal answer itself when the look read the result (output and cost included).
    result: ResultInfo | None = None


class _Estimate:
    """The expected completion time, refreshed from status answers (monotonic clock)."""

    def __init__(self, spec: GenerationSpec, policy: PollPolicy, start: float) -> None:
        self.spec = spec
        self.policy = policy
        self.render = policy.latency.render_s(spec.tier, spec.duration, spec.generate_audio)
        self.done_at = start + policy.latency.total_s(spec.tier, spec.duration, spec.generate_audio)
        self.last_state: JobState | None = None
        self.last_seen = start
        self.tail: float | None = None

    def update(self, info: StatusInfo, now: float) -> None:
        latency = self.policy.latency
        if info.state is JobState.QUEUED:
            # The queue position is fresh information: re-estimate from it.
            self.done_at = now + latency.queue_s(info.queue_position) + self.render
        elif info.state is JobState.RUNNING and self.last_state is JobState.QUEUED:
            # It started somewhere between the previous look and this one: take the middle.
            self.done_at = (self.last_seen + now) / 2 + self.render
        self.last_state = info.state
        self.last_seen = now

    def next_pause(self, now: float) -> float:
        policy = self.policy
        step = policy.tail_fraction * self.render
        # Until the likely window opens (e.g. after a queued answer): one pause to its start.
        to_window = self.done_at - (1 - policy.first_fraction) * self.render - now
        if to_window > step:
            self.tail = None
            return policy.clamp(to_window)
        # In the window: even steps, a finish being about as likely anywhere in it.
        if now < self.done_at + policy.window_fraction * self.render:
            self.tail = None
            return policy.clamp(step)
        # Past it: back off geometrically from the step.
        self.tail = step * policy.tail_factor if self.tail is None else self.tail * policy.tail_factor
        return policy.clamp(self.tail)


def first_pause(spec: GenerationSpec, policy: PollPolicy) -> float:
    """Seconds before the first status call for a freshly submitted ``spec``."""
    expected = policy.latency.total_s(spec.tier, spec.duration, spec.generate_audio)
    return policy.clamp(policy.first_fraction * expected)


async def wait_for_completion(
    provider: Provider,
    submission: Submission,
    spec: GenerationSpec,
    policy: PollPolicy | None = None,
    *,
    on_status: StatusCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    via_result: bool = True,
) -> WaitOutcome:
    """Poll the request until it is terminal; return the terminal status (and result, if read).

    Looks read ``provider.poll_result`` when the provider is a :class:`ResultPoller` and
    ``via_result`` is true (except right after a *queued* answer), else ``provider.status``.
    Transient failures of a look (after the provider's own retries) do not end the wait: the
    request is still running and billing, so we keep looking until ``max_wait``. Raises
    GenerationTimeout when the cap is reached or after :data:`MAX_UNREADABLE_ANSWERS` unreadable
    answers in a row, other ProviderErrors (404, auth) as they come.
    """
    policy = policy or PollPolicy()
    start = clock()
    estimate = _Estimate(spec, policy, start)
    rid = submission.request_id
    poller = provider if via_result and isinstance(provider, ResultPoller) else None
    calls = 0
    transient = 0
    unreadable = 0
    pause = first_pause(spec, policy)
    while True:
        await sleep(pause)
        result: ResultInfo | None = None
        info: StatusInfo | None = None
        try:
            calls += 1
            if poller is not None and estimate.last_state is not JobState.QUEUED:
                result = await poller.poll_result(rid)
                info = StatusInfo(rid, result.state, result.raw_status)
            else:
                info = await provider.status(rid)
        except UnreadableAnswer as exc:
            transient += 1
            unreadable += 1
            if unreadable >= MAX_UNREADABLE_ANSWERS:
                raise unreadable_timeout(rid, unreadable, exc, clock() - start) from exc
        except (TransportError, UpstreamError, RateLimited):
            transient += 1
        now = clock()
        if info is not None:
            unreadable = 0
            if on_status is not None:
                on_status(info)
            if info.state.is_terminal:
                return WaitOutcome(
                    status=info,
                    status_calls=calls,
                    transient_errors=transient,
                    seen_at=time.time(),
                    waited_s=now - start,
                    result=result,
                )
            estimate.update(info, now)
        if now - start >= policy.max_wait:
            raise GenerationTimeout(
                f"request {submission.request_id} still unfinished after {now - start:.0f} s "
                f"({calls} status calls); it may still complete and be billed",
                request_id=submission.request_id,
            )
        pause = min(estimate.next_pause(now), max(policy.max_wait - (now - start), 0.0))
