"""How a step's outcome becomes an event of the transition table (and the table accepts it)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import BadRequest, GenerationTimeout, SubmitOutcomeUnknown, TransportError
from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.base import DownloadedClip, JobState, ResultInfo
from pipeline.providers.jobs import JobOutcome, JobReport
from pipeline.render.outcomes import charged_not_downloaded, report_event, submit_error_event
from pipeline.store.transitions import Event, JobStatus, allows

SPEC = GenerationSpec(tier=Tier.STANDARD, prompt="p", duration=5)
CLIP = DownloadedClip(Path("c.mp4"), "u", 1, "ab", 5.0, 0, 0, False)


def result(state: JobState) -> ResultInfo:
    return ResultInfo("r", state, state.value)


@pytest.mark.parametrize(
    ("report", "state", "event"),
    [
        (
            JobReport(SPEC, JobOutcome.COMPLETED, result=result(JobState.COMPLETED), clip=CLIP),
            JobStatus.CHARGED,
            Event.DOWNLOADED,
        ),
        (
            JobReport(SPEC, JobOutcome.FAILED, result=result(JobState.COMPLETED)),
            JobStatus.CHARGED,
            Event.DOWNLOAD_FAILED,
        ),
        (
            JobReport(SPEC, JobOutcome.FAILED, result=result(JobState.FAILED)),
            JobStatus.SUBMITTED,
            Event.FAILED,
        ),
        (
            JobReport(SPEC, JobOutcome.CANCELLED, result=result(JobState.CANCELLED)),
            JobStatus.SUBMITTED,
            Event.CANCELLED,
        ),
        (
            JobReport(SPEC, JobOutcome.TIMED_OUT, error=GenerationTimeout("slow")),
            JobStatus.SUBMITTED,
            Event.TIMED_OUT,
        ),
        (
            JobReport(SPEC, JobOutcome.FAILED, error=TransportError("404")),
            JobStatus.SUBMITTED,
            Event.TIMED_OUT,
        ),
        # Once charged, anything but a clip leaves it charged: it is never bought again.
        (
            JobReport(SPEC, JobOutcome.FAILED, error=TransportError("404")),
            JobStatus.CHARGED,
            Event.DOWNLOAD_FAILED,
        ),
    ],
)
def test_report_events(report: JobReport, state: JobStatus, event: Event) -> None:
    assert report_event(report, state) is event
    assert allows(state, event)


def test_submit_errors() -> None:
    assert submit_error_event(SubmitOutcomeUnknown("lost")) is Event.ANSWER_LOST
    assert submit_error_event(BadRequest("no")) is Event.REJECTED


def test_charged_message_names_the_exact_cost() -> None:
    message = charged_not_downloaded("truncated", "req-1", Decimal("0.672"))
    assert "request req-1 is charged ($0.672)" in message and "not bought again" in message
