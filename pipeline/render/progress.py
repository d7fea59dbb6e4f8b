"""The callbacks a run reports through, given to it as one value when it is opened.

:class:`RunHooks` carries them all (job events, stages, spend, the job wrapper, the chooser for
``select: manual``, and who wants the open session): the command line fills it for its progress
bars, the Prefect flow adds its task wrapper and UI chooser, tests pass what they watch. The
session hands each hook to the engine and the run as it builds them; nothing is held process-wide
and nothing is set on a built object. Nothing here talks to Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

from pipeline.planning.plan import PlannedRequest
from pipeline.render.engine import EventSink, JobWrapper, SpendSink

if TYPE_CHECKING:
    from pipeline.render.run import Chooser, RunResult, StageRunner, StageSink
    from pipeline.render.session import RunSession

#: The run's status in the job store while ``select: manual`` waits for a person's choice.
WAITING_FOR_CHOICE = "waiting for choice"


@dataclass(frozen=True)
class RunHooks:
    """Everything a run calls back, passed in once when it is opened (every hook optional).

    ``on_spend`` receives the run's :class:`~pipeline.store.jobs.Spend` as the job store has it:
    once when the run opens — a resumed run starts from what its earlier attempts charged — and
    again whenever it changes (a charge is the provider's figure, recorded when it billed).
    ``on_start`` gets the open session (the command line keeps it to cancel on Ctrl-C).
    ``on_waiting`` is told where and how to choose when ``select: manual`` waits for a person.
    """

    on_event: EventSink | None = None
    on_stage: StageSink | None = None
    on_spend: SpendSink | None = None
    on_start: Callable[[RunSession], None] | None = None
    wrap: JobWrapper | None = None
    choose: Chooser | None = None
    #: Told (a sentence to show a person) when the run stops to wait for a manual choice.
    on_waiting: Callable[[str], None] | None = None
    #: Runs each stage (masters, QC, selection, archive, report): the flow, as task runs.
    run_stage: StageRunner | None = None

    def adding(
        self,
        *,
        on_event: EventSink | None = None,
        on_stage: StageSink | None = None,
        on_spend: SpendSink | None = None,
        wrap: JobWrapper | None = None,
        choose: Chooser | None = None,
        run_stage: StageRunner | None = None,
    ) -> RunHooks:
        """These hooks with more: ``on_event``, ``on_stage`` and ``on_spend`` called after the
        existing ones, ``wrap``, ``choose`` and ``run_stage`` where none is set yet (the
        caller's own take precedence)."""
        return replace(
            self,
            on_event=fan_out(self.on_event, on_event) if on_event is not None else self.on_event,
            on_stage=_both(self.on_stage, on_stage),
            on_spend=_both(self.on_spend, on_spend),
            wrap=self.wrap or wrap,
            choose=self.choose or choose,
            run_stage=self.run_stage or run_stage,
        )

    def merged(self, more: RunHooks) -> RunHooks:
        """These hooks with ``more``'s, as :meth:`adding` adds them (``on_start`` and
        ``on_waiting`` are this one's)."""
        return self.adding(
            on_event=more.on_event,
            on_stage=more.on_stage,
            on_spend=more.on_spend,
            wrap=more.wrap,
            choose=more.choose,
            run_stage=more.run_stage,
        )


_V = TypeVar("_V")


def _both(
    first: Callable[[_V], None] | None, then: Callable[[_V], None] | None
) -> Callable[[_V], None] | None:
    """One callback calling ``first`` then ``then`` (either may be unset)."""
    if first is None or then is None:
        return first or then

    def both(value: _V) -> None:
        first(value)
        then(value)

    return both


def fan_out(*sinks: EventSink | None) -> EventSink:
    """One event callback calling each of ``sinks`` that is set."""
    chosen = [s for s in sinks if s is not None]

    def sink(event: str, request: PlannedRequest, detail: str) -> None:
        for s in chosen:
            s(event, request, detail)

    return sink


@dataclass(frozen=True)
class MasterLine:
    """One master of a run's outcome: where it is, or why it is not."""

    narrative: str
    variant: str
    pass_: str
    path: str | None
    duration_s: float
    qc_passed: bool
    error: str | None


@dataclass(frozen=True)
class JobLine:
    """A job that did not end with a clip, and why."""

    narrative: str
    variant: str
    pass_: str
    segment: int
    status: str
    error: str | None


@dataclass(frozen=True)
class RefusedFile:
    """A file the archive refused, with the reason."""

    path: str
    error: str


@dataclass(frozen=True)
class RunOutcome:
    """A run's outcome as plain data: the flow's return value, what the CLI prints."""

    run_id: str
    script: str
    delivered: bool
    selected: tuple[str, ...]
    charged_usd: Decimal
    reserved_usd: Decimal
    limit_usd: Decimal | None
    masters: tuple[MasterLine, ...]
    jobs_not_completed: tuple[JobLine, ...]
    archive: str | None
    archive_error: str | None
    archive_refused: tuple[RefusedFile, ...]
    report: str | None
    run_dir: str


def summary(result: RunResult) -> RunOutcome:
    """A run's outcome as plain data (the flow's return value)."""
    spend = result.spend
    return RunOutcome(
        run_id=result.run_id,
        script=result.script,
        delivered=result.delivered,
        selected=tuple(result.selected),
        charged_usd=spend.charged if spend else Decimal(0),
        reserved_usd=spend.reserved if spend else Decimal(0),
        limit_usd=spend.limit if spend else None,
        masters=tuple(
            MasterLine(
                narrative=m.narrative,
                variant=m.variant,
                pass_=m.pass_,
                path=str(m.path) if m.path else None,
                duration_s=m.duration_s,
                qc_passed=m.passed,
                error=m.error,
            )
            for m in result.masters
        ),
        jobs_not_completed=tuple(
            JobLine(
                narrative=j.request.narrative,
                variant=j.request.variant,
                pass_=j.request.pass_,
                segment=j.request.segment,
                status=str(j.status),
                error=j.error,
            )
            for j in result.jobs
            if not j.ok
        ),
        archive=result.archive.destination if result.archive else None,
        archive_error=result.archive_error,
        # Every file the archive refused, with why: "archived to: …" alone hid them.
        archive_refused=tuple(
            RefusedFile(str(f.path), str(f.error) if f.error else f.outcome.value)
            for f in (result.archive.refused if result.archive else [])
        ),
        report=str(result.report) if result.report else None,
        run_dir=str(result.layout.root),
    )
