"""The poller against a scripted provider on a fake clock: when it looks, how often, when it stops."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from pipeline.errors import AuthError, GenerationTimeout, UpstreamError
from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.base import (
    CancelOutcome,
    DownloadedClip,
    JobState,
    Provider,
    ResultInfo,
    StatusInfo,
    Submission,
)
from pipeline.providers.latency import LatencyModel
from pipeline.providers.polling import MAX_UNREADABLE_ANSWERS, PollPolicy, first_pause, wait_for_completion
from pipeline.providers.wire import UnreadableAnswer

SPEC = GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=5)
SUB = Submission(request_id="r", model_id=SPEC.model_id)


def as_provider(fake: object) -> Provider:
    """The fakes here answer only what polling calls (status, result): enough for these tests."""
    return cast(Provider, fake)


@dataclass
class Timeline:
    """A fake provider whose job is queued until ``start`` and finishes at ``done`` (fake seconds)."""

    start: float
    done: float
    final: JobState = JobState.COMPLETED
    now: float = 0.0
    calls: list[float] = field(default_factory=list)
    errors_at_call: set[int] = field(default_factory=set)
    name: str = "fake"

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    async def status(self, request_id: str) -> StatusInfo:
        self.calls.append(self.now)
        if len(self.calls) in self.errors_at_call:
            raise UpstreamError("502 after retries")
        if self.now < self.start:
            return StatusInfo(request_id, JobState.QUEUED, "in_queue", queue_position=2)
        if self.now < self.done:
            return StatusInfo(request_id, JobState.RUNNING, "in_progress")
        return StatusInfo(request_id, self.final, self.final.value)

    async def submit(self, spec: GenerationSpec) -> Submission:
        raise NotImplementedError

    async def result(self, request_id: str) -> ResultInfo:
        raise NotImplementedError

    async def cancel(self, request_id: str) -> CancelOutcome:
        raise NotImplementedError

    async def download(self, url: str, dest: Path, spec: GenerationSpec) -> DownloadedClip:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def wait(timeline: Timeline, policy: PollPolicy | None = None) -> tuple[int, float]:
    outcome = asyncio.run(
        wait_for_completion(
            as_provider(timeline),
            SUB,
            SPEC,
            policy or PollPolicy(),
            clock=timeline.clock,
            sleep=timeline.sleep,
        )
    )
    assert outcome.status.state is timeline.final
    return outcome.status_calls, timeline.now - timeline.done


def test_first_look_is_timed_from_the_expected_generation_time() -> None:
    model = LatencyModel()
    expected = model.total_s(Tier.STANDARD, 5, False)
    assert first_pause(SPEC, PollPolicy()) == pytest.approx(min(0.8 * expected, 60.0))
    longer = GenerationSpec(tier=Tier.K4, prompt="p", duration=15, generate_audio=True)
    assert first_pause(longer, PollPolicy()) == 60.0  # capped by max_interval


def test_on_time_job_costs_few_calls_and_little_latency() -> None:
    expected = LatencyModel().total_s(Tier.STANDARD, 5, False)
    calls, late = wait(Timeline(start=5.0, done=expected))
    assert calls <= 5  # the first look at 0.8 of the expected time, then steps of 0.06 × render
    step = PollPolicy().tail_fraction * LatencyModel().render_s(Tier.STANDARD, 5, False)
    assert late < step + 1e-9


def test_late_job_backs_off_geometrically_up_to_the_cap() -> None:
    timeline = Timeline(start=5.0, done=2000.0)
    calls, late = wait(timeline)
    gaps = [b - a for a, b in zip(timeline.calls, timeline.calls[1:], strict=False)]
    overdue = [g for g, t in zip(gaps, timeline.calls[1:], strict=False) if t > 90]
    assert max(gaps) <= PollPolicy().max_interval_s + 1e-9
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(overdue))  # never shrinking
    assert calls < (2000.0 / 2.0) / 10  # a tenth of the fixed-2-s poller's calls, or better
    assert late <= PollPolicy().max_interval_s


def test_queue_position_moves_the_estimate_later() -> None:
    # Still queued at the first look: the next look waits for queue + render, not 2 s.
    timeline = Timeline(start=100.0, done=170.0)
    wait(timeline)
    assert timeline.calls[1] - timeline.calls[0] > 30.0


def test_transient_errors_do_not_end_the_wait() -> None:
    timeline = Timeline(start=1.0, done=200.0, errors_at_call={1, 2})
    calls, _ = wait(timeline)
    assert calls == len(timeline.calls) and calls >= 3


@pytest.mark.parametrize("final", [JobState.FAILED, JobState.CANCELLED])
def test_failed_and_cancelled_are_terminal(final: JobState) -> None:
    timeline = Timeline(start=1.0, done=30.0, final=final)
    outcome = asyncio.run(
        wait_for_completion(
            as_provider(timeline), SUB, SPEC, PollPolicy(), clock=timeline.clock, sleep=timeline.sleep
        )
    )
    # The wait ends with the first look that sees the state, and looks no more.
    assert outcome.status.state is final
    assert outcome.status_calls == len(timeline.calls)
    assert timeline.calls[-1] >= timeline.done
    assert all(at < timeline.done for at in timeline.calls[:-1])


def test_wait_is_capped() -> None:
    timeline = Timeline(start=1.0, done=10_000.0)
    with pytest.raises(GenerationTimeout, match="still unfinished") as info:
        asyncio.run(
            wait_for_completion(
                as_provider(timeline),
                SUB,
                SPEC,
                PollPolicy(max_wait_s=600.0),
                clock=timeline.clock,
                sleep=timeline.sleep,
            )
        )
    assert info.value.request_id == "r"
    assert timeline.now <= 600.0 + 1e-6


def test_permanent_errors_end_the_wait() -> None:
    class Denied(Timeline):
        async def status(self, request_id: str) -> StatusInfo:
            raise AuthError("403")

    with pytest.raises(AuthError):
        wait(Denied(start=0.0, done=1.0))


def test_scale_shrinks_every_interval() -> None:
    fast = PollPolicy(latency=LatencyModel(scale=0.01))
    timeline = Timeline(start=0.05, done=0.7)
    asyncio.run(
        wait_for_completion(
            as_provider(timeline), SUB, SPEC, fast, clock=timeline.clock, sleep=timeline.sleep
        )
    )
    assert timeline.now < 2.0


# --- unreadable answers end the wait after a few in a row -------------------------------------


@dataclass
class Garbled(Timeline):
    """Answers unreadably on the calls listed (1-based), or on every call from ``garbled_from``."""

    garbled: set[int] = field(default_factory=set)
    garbled_from: int | None = None

    async def status(self, request_id: str) -> StatusInfo:
        n = len(self.calls) + 1
        if n in self.garbled or (self.garbled_from is not None and n >= self.garbled_from):
            self.calls.append(self.now)
            raise UnreadableAnswer("status r: HTTP 200 error 500001: internal", status_code=200)
        return await super().status(request_id)


def test_unreadable_answers_in_a_row_end_the_wait_like_a_timeout() -> None:
    timeline = Garbled(start=1.0, done=10_000.0, garbled_from=2)
    with pytest.raises(GenerationTimeout) as info:
        wait(timeline)
    text = str(info.value)
    assert f"{MAX_UNREADABLE_ANSWERS} answers in a row could not be read" in text
    assert "500001" in text and "may still be running and billed" in text and "stays submitted" in text
    assert info.value.request_id == "r"
    assert len(timeline.calls) == 1 + MAX_UNREADABLE_ANSWERS  # not an hour of looking
    assert timeline.now < 600.0


def test_a_readable_answer_resets_the_count() -> None:
    # Four garbled, one good, four garbled, … never five in a row: the wait goes on to the end.
    garbled = {n for n in range(1, 40) if n % 5 != 0}
    timeline = Garbled(start=1.0, done=400.0, garbled=garbled)
    calls, _ = wait(timeline)
    assert calls >= 10


def test_transient_errors_do_not_count_as_unreadable() -> None:
    timeline = Timeline(start=1.0, done=400.0, errors_at_call=set(range(1, 12)))
    calls, _ = wait(timeline)
    assert calls > MAX_UNREADABLE_ANSWERS


# --- polling through the result ---------------------------------------------------------------


@dataclass
class ResultTimeline(Timeline):
    """A provider that also answers polls through its result (``poll_result``)."""

    looks: list[str] = field(default_factory=list)

    async def status(self, request_id: str) -> StatusInfo:
        self.looks.append("status")
        return await super().status(request_id)

    async def poll_result(self, request_id: str) -> ResultInfo:
        self.looks.append("result")
        self.calls.append(self.now)
        if self.now < self.start:
            return ResultInfo(request_id, JobState.QUEUED, "in_queue")
        if self.now < self.done:
            return ResultInfo(request_id, JobState.RUNNING, "in_progress")
        return ResultInfo(
            request_id, self.final, self.final.value, video_urls=("https://cdn.runcomfy.net/v.mp4",)
        )


def test_polls_read_the_result_and_keep_the_terminal_answer() -> None:
    timeline = ResultTimeline(start=1.0, done=150.0)
    outcome = asyncio.run(
        wait_for_completion(
            as_provider(timeline), SUB, SPEC, PollPolicy(), clock=timeline.clock, sleep=timeline.sleep
        )
    )
    assert set(timeline.looks) == {"result"}
    assert outcome.result is not None and outcome.result.video_url == "https://cdn.runcomfy.net/v.mp4"
    assert outcome.status_calls == len(timeline.looks)


def test_after_a_queued_answer_the_status_gives_the_queue_position() -> None:
    timeline = ResultTimeline(start=120.0, done=190.0)
    asyncio.run(
        wait_for_completion(
            as_provider(timeline), SUB, SPEC, PollPolicy(), clock=timeline.clock, sleep=timeline.sleep
        )
    )
    assert timeline.looks[:2] == ["result", "status"]


def test_result_polling_can_be_turned_off() -> None:
    timeline = ResultTimeline(start=1.0, done=150.0)
    outcome = asyncio.run(
        wait_for_completion(
            as_provider(timeline),
            SUB,
            SPEC,
            PollPolicy(),
            clock=timeline.clock,
            sleep=timeline.sleep,
            via_result=False,
        )
    )
    assert set(timeline.looks) == {"status"} and outcome.result is None


def _spread_jobs() -> list[Timeline]:
    """Jobs finishing anywhere the sandbox's dice put them: queue 0.5–1.5 × 5 s, render ±30 %
    around the model (``pipeline/providers/sandbox/state.py``), on an even grid (no randomness)."""
    render = LatencyModel().render_s(Tier.STANDARD, 5, False)
    grid = [i / 10 for i in range(11)]
    return [
        Timeline(start=5.0 * (0.5 + q), done=5.0 * (0.5 + q) + render * (0.7 + 0.6 * r))
        for q in grid
        for r in grid
    ]


def test_looks_through_the_likely_window_cut_lateness_for_a_few_more_calls() -> None:
    # The policy before issue 16 (one look at the expected time, then a geometric tail)
    # against the window of even steps: lateness at least a third lower, at most 2 more calls.
    old = PollPolicy(first_fraction=0.85, tail_fraction=0.05, window_fraction=-1.0)
    found = {}
    for name, policy in (("old", old), ("new", PollPolicy())):
        results = [wait(job, policy) for job in _spread_jobs()]
        found[name] = (
            sum(c for c, _ in results) / len(results),
            sum(late for _, late in results) / len(results),
        )
    (old_calls, old_late), (new_calls, new_late) = found["old"], found["new"]
    assert new_late <= old_late * 2 / 3
    assert new_calls <= old_calls + 2
    assert new_calls <= 6
