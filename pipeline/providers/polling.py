"""Waiting for a request to finish without hammering the API.

The official CLI polls every 2 s; a 75 s generation then costs ~38 status calls. Here the first
look is timed from the expected generation time (tier, duration, audio, queue position: see
:mod:`pipeline.providers.latency`), the estimate is refreshed from what each status answer says,
and once a request is overdue the interval grows geometrically up to a cap. The whole wait is
capped too (:class:`~pipeline.errors.GenerationTimeout`). Every status call is counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipeline.errors import GenerationTimeout, RateLimited, TransportError, UpstreamError
from pipeline.generation import GenerationSpec
from pipeline.providers.base import JobState, Provider, StatusInfo, Submission
from pipeline.providers.latency import LatencyModel

StatusCallback = Callable[[StatusInfo], None]


@dataclass(frozen=True)
class PollPolicy:
    """When to look. Durations are provider seconds, multiplied by ``latency.scale``."""

    latency: LatencyModel = field(default_factory=LatencyModel)
    #: The first look happens at this fraction of the expected total time.
    first_fraction: float = 0.85
    min_interval_s: float = 2.0
    max_interval_s: float = 60.0
    #: First overdue interval, as a fraction of the expected render time; then × ``tail_factor``.
    tail_fraction: float = 0.05
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
        remaining = self.done_at - now
        if remaining > self.policy.min_interval / 2:
            self.tail = None
            return self.policy.clamp(remaining)
        # Overdue: back off geometrically, starting small relative to the render time.
        self.tail = (
            self.policy.tail_fraction * self.render
            if self.tail is None
            else self.tail * self.policy.tail_factor
        )
        return self.policy.clamp(self.tail)


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
) -> WaitOutcome:
    """Poll ``provider.status`` until the request is terminal; return the terminal status.

    Transient failures of a status call (after the provider's own retries) do not end the wait:
    the request is still running and billing, so we keep looking until ``max_wait``. Raises
    GenerationTimeout when the cap is reached, other ProviderErrors (404, auth) as they come.
    """
    policy = policy or PollPolicy()
    start = clock()
    estimate = _Estimate(spec, policy, start)
    calls = 0
    transient = 0
    pause = first_pause(spec, policy)
    while True:
        await sleep(pause)
        try:
            calls += 1
            info = await provider.status(submission.request_id)
        except (TransportError, UpstreamError, RateLimited):
            transient += 1
            info = None
        now = clock()
        if info is not None:
            if on_status is not None:
                on_status(info)
            if info.state.is_terminal:
                return WaitOutcome(
                    status=info,
                    status_calls=calls,
                    transient_errors=transient,
                    seen_at=time.time(),
                    waited_s=now - start,
                )
            estimate.update(info, now)
        if now - start >= policy.max_wait:
            raise GenerationTimeout(
                f"request {submission.request_id} still unfinished after {now - start:.0f} s "
                f"({calls} status calls); it may still complete and be billed",
                request_id=submission.request_id,
            )
        pause = min(estimate.next_pause(now), max(policy.max_wait - (now - start), 0.0))
