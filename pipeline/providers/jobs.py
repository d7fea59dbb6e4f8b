"""One generation job end to end: submit, wait, read the result, download, verify.

:func:`run_job` never raises a ProviderError: it returns a :class:`JobReport` whose ``outcome``
is explicit (completed with a verified file, failed, cancelled, unknown, timed out), so a batch
of jobs run with ``asyncio.gather`` always ends with every job accounted for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from pipeline.errors import (
    GenerationCancelled,
    GenerationFailed,
    GenerationTimeout,
    KlingflowError,
    MediaError,
    ProviderError,
    SubmitOutcomeUnknown,
    UpstreamError,
)
from pipeline.generation import GenerationSpec
from pipeline.providers.base import (
    DownloadedClip,
    JobState,
    Provider,
    ResultInfo,
    StatusInfo,
    Submission,
)
from pipeline.providers.polling import (
    MAX_UNREADABLE_ANSWERS,
    PollPolicy,
    WaitOutcome,
    unreadable_timeout,
    wait_for_completion,
)
from pipeline.providers.wire import UnreadableAnswer

#: How often a "completed" status may be followed by a result that still says otherwise.
RESULT_LAG_ATTEMPTS: Final = 5
CANCEL_ON_INTERRUPT_TIMEOUT_S: Final = 10.0


class JobOutcome(StrEnum):
    """How a job ended, from the caller's point of view."""

    COMPLETED = "completed"  # a verified file is on disk
    FAILED = "failed"  # the provider failed it, or an error ended the job (see ``error``)
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # the submit's answer was lost: it may exist and be billed
    TIMED_OUT = "timed_out"  # still unfinished at the provider when we stopped waiting


@dataclass(frozen=True)
class JobEvent:
    """Progress of a job, for a progress bar or a log."""

    kind: str  # submitted | status | downloading | done
    request_id: str | None = None
    status: StatusInfo | None = None


@dataclass
class JobReport:
    """Everything known about a job when it ended."""

    spec: GenerationSpec
    outcome: JobOutcome
    submission: Submission | None = None
    wait: WaitOutcome | None = None
    result: ResultInfo | None = None
    clip: DownloadedClip | None = None
    error: KlingflowError | None = None
    #: Requests whose submit outcome was lost before the one that counts (opt-in resubmits).
    abandoned_unknown: int = 0

    @property
    def request_id(self) -> str | None:
        """The provider's id of the request, when one is known."""
        return self.submission.request_id if self.submission else None


EventCallback = Callable[[JobEvent], None]


def _outcome_of(error: KlingflowError) -> JobOutcome:
    if isinstance(error, SubmitOutcomeUnknown):
        return JobOutcome.UNKNOWN
    if isinstance(error, GenerationTimeout):
        return JobOutcome.TIMED_OUT
    if isinstance(error, GenerationCancelled):
        return JobOutcome.CANCELLED
    return JobOutcome.FAILED


async def _submit(
    provider: Provider, spec: GenerationSpec, report: JobReport, resubmit_unknown: bool
) -> Submission:
    try:
        return await provider.submit(spec)
    except SubmitOutcomeUnknown:
        if not resubmit_unknown:
            raise
        # Explicit opt-in: the caller accepts that the first request may also be billed.
        report.abandoned_unknown += 1
        return await provider.submit(spec)


async def _final_result(provider: Provider, request_id: str, policy: PollPolicy) -> ResultInfo:
    """The terminal result, read after a status look said the request finished.

    A result lagging behind its status is read again (``RESULT_LAG_ATTEMPTS``); unreadable
    answers end it like a timeout after ``MAX_UNREADABLE_ANSWERS`` in a row (still followed).
    """
    lagging = 0
    unreadable = 0
    started = time.monotonic()
    while True:
        try:
            result = await provider.result(request_id)
        except UnreadableAnswer as exc:
            unreadable += 1
            if unreadable >= MAX_UNREADABLE_ANSWERS:
                raise unreadable_timeout(request_id, unreadable, exc, time.monotonic() - started) from exc
        else:
            unreadable = 0
            if result.state.is_terminal:
                return result
            lagging += 1
            if lagging >= RESULT_LAG_ATTEMPTS:
                raise UpstreamError(
                    f"request {request_id}: status says finished, result says {result.raw_status}"
                )
        await asyncio.sleep(policy.min_interval)


def _finished(wait: WaitOutcome) -> ResultInfo | None:
    """The result the wait's last look already read, when it is usable as the final one."""
    result = wait.result
    if result is None or not result.state.is_terminal:
        return None
    if result.state is JobState.COMPLETED and result.video_url is None:
        return None  # the output may lag the state: read the result again
    return result


async def run_job(
    provider: Provider,
    spec: GenerationSpec,
    dest: Path | Callable[[str], Path],
    *,
    policy: PollPolicy | None = None,
    on_event: EventCallback | None = None,
    resubmit_unknown: bool = False,
    submission: Submission | None = None,
    on_terminal: Callable[[], Awaitable[None]] | None = None,
) -> JobReport:
    """Buy one clip for ``spec`` and leave it verified at ``dest``; report how it went.

    ``dest`` is a path, or a function of the request id giving one (ids are known only after
    the submit). With ``submission`` (a request submitted earlier, e.g. before an interruption)
    nothing is submitted: the request is followed to its end, never bought again.
    ``on_terminal`` is awaited once the provider reports the request finished, before the
    result is read and the clip downloaded (a caller frees its in-flight slot there).

    A lost submit answer ends the job as UNKNOWN unless ``resubmit_unknown`` (one more submit,
    knowing the first may be billed too). If the task is cancelled (Ctrl-C), a best-effort
    cancel is sent for the request, as the official CLI does.
    """
    policy = policy or PollPolicy()
    report = JobReport(spec=spec, outcome=JobOutcome.FAILED)

    def emit(event: JobEvent) -> None:
        if on_event is not None:
            on_event(event)

    try:
        if submission is None:
            report.submission = await _submit(provider, spec, report, resubmit_unknown)
            emit(JobEvent("submitted", report.submission.request_id))
        else:
            report.submission = submission
        rid = report.submission.request_id
        report.wait = await wait_for_completion(
            provider,
            report.submission,
            spec,
            policy,
            on_status=lambda info: emit(JobEvent("status", rid, info)),
        )
        if on_terminal is not None:
            await on_terminal()
        report.result = _finished(report.wait) or await _final_result(provider, rid, policy)
        if report.result.state is JobState.FAILED:
            raise GenerationFailed(
                f"request {rid} failed: {report.result.error or 'no reason given'}", request_id=rid
            )
        if report.result.state is JobState.CANCELLED:
            raise GenerationCancelled(f"request {rid} was cancelled", request_id=rid)
        url = report.result.video_url
        if url is None:
            raise UpstreamError(f"request {rid} completed without a video URL", request_id=rid)
        emit(JobEvent("downloading", rid))
        target = dest(rid) if callable(dest) else dest
        report.clip = await provider.download(url, target, spec)
        report.outcome = JobOutcome.COMPLETED
        emit(JobEvent("done", rid))
    except (ProviderError, MediaError) as exc:
        report.error = exc
        report.outcome = _outcome_of(exc)
    except asyncio.CancelledError:
        if report.submission is not None and report.clip is None:
            with contextlib.suppress(ProviderError, TimeoutError):
                await asyncio.wait_for(
                    provider.cancel(report.submission.request_id), CANCEL_ON_INTERRUPT_TIMEOUT_S
                )
        raise
    return report
