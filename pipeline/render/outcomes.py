"""What each step of a job's attempt ended with, as an event of the transition table.

The engine (:mod:`pipeline.render.engine`) runs a step — submit, follow the request, download —
and hands its outcome here; the answer is an :class:`~pipeline.store.transitions.Event`, which
the table turns into the job's next state and ledger effect. Pure functions, plus the messages
about money that the outcomes carry.
"""

from __future__ import annotations

from decimal import Decimal

from pipeline.errors import ProviderError, SubmitOutcomeUnknown
from pipeline.money import format_usd
from pipeline.providers.base import JobState
from pipeline.providers.jobs import JobOutcome, JobReport
from pipeline.store.transitions import Event, JobStatus

#: Why a job was not bought: its cost would have taken the run's spend over the limit.
BUDGET_EXHAUSTED = "not submitted: its cost would take the run over budget.limit_usd"


def submit_error_event(error: ProviderError) -> Event:
    """A submit that raised: its answer was lost (the request may exist), or it was refused."""
    return Event.ANSWER_LOST if isinstance(error, SubmitOutcomeUnknown) else Event.REJECTED


def report_event(report: JobReport, state: JobStatus) -> Event:
    """How following a request (``run_job``) ended, for a job in ``state`` (submitted/charged).

    A billed request whose clip did not arrive is ``download_failed`` — and so is anything but a
    clip once the job is charged: its money is spent, the clip is fetched on a rerun.
    """
    if report.outcome is JobOutcome.COMPLETED and report.clip is not None:
        return Event.DOWNLOADED
    billed = report.result is not None and report.result.state is JobState.COMPLETED
    if billed or state is JobStatus.CHARGED:
        return Event.DOWNLOAD_FAILED
    failed = report.result is not None and report.result.state is JobState.FAILED
    if report.outcome is JobOutcome.FAILED and failed:
        return Event.FAILED
    if report.outcome is JobOutcome.CANCELLED:
        return Event.CANCELLED
    # Timed out, or no answer to say how it ended: still followed, never bought twice.
    return Event.TIMED_OUT


def report_error(report: JobReport) -> str:
    """The error text of a report that did not end with a clip."""
    return str(report.error) if report.error else report.outcome.value


def where(narrative: str, variant: str, pass_: str, segment: int) -> str:
    """A job's place in the plan, for messages."""
    return f"{narrative}/{variant}/{pass_} segment {segment}"


def unknown_advice(run_id: str, script_file: str, reason: str, reserved: Decimal) -> str:
    """What an unknown job may cost and how to settle it."""
    return (
        f"{reason}; the request may exist and be billed up to {format_usd(reserved, exact=True)} "
        f"(kept reserved in run {run_id}). Look for it in the provider's dashboard or ledger, or "
        f"buy it again with `klingflow run {script_file} --resubmit-unknown` (may pay twice: the "
        "lost request then counts as charged)"
    )


def shortfall(
    run_id: str, place: str, cost: Decimal, limit: Decimal, committed: Decimal, reserved: Decimal
) -> str:
    """Why ``--resubmit-unknown`` did not buy a job again: by how much the budget is short."""
    left = max(limit - committed, Decimal(0))
    return (
        f"--resubmit-unknown: buying {place} again costs {format_usd(cost, exact=True)}, but run "
        f"{run_id} has {format_usd(left, exact=True)} of its {format_usd(limit, exact=True)} budget "
        f"left (short by {format_usd(cost - left, exact=True)}; a resumed run keeps its limit). It "
        f"stays unknown and may be billed up to {format_usd(reserved, exact=True)}: look for the "
        "request in the provider's dashboard or ledger"
    )


def charged_not_downloaded(error: str, request_id: str, cost: Decimal) -> str:
    """A billed request whose clip did not arrive: what happened and that a rerun fetches it."""
    return (
        f"{error} — request {request_id} is charged ({format_usd(cost, exact=True)}) but its clip "
        "was not downloaded: run again to download it (it is not bought again)"
    )
