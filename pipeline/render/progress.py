"""Watching a run from the process that started it (the CLI's progress bars).

A flow's parameters must be plain data, so the command line registers its callbacks here,
process-wide, before calling the flow; the flow hands them to the engine. Nothing here talks
to Prefect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pipeline.planning.plan import PlannedRequest
from pipeline.render.engine import EventSink, SpendSink

if TYPE_CHECKING:
    from pipeline.render.run import RunResult, StageSink
    from pipeline.render.session import RunSession

_event_sink: EventSink | None = None
_stage_sink: StageSink | None = None
_on_start: Callable[[RunSession], None] | None = None
_spend_sink: SpendSink | None = None


@contextlib.contextmanager
def observe(
    on_event: EventSink | None = None,
    on_stage: StageSink | None = None,
    on_start: Callable[[RunSession], None] | None = None,
    on_spend: SpendSink | None = None,
) -> Iterator[None]:
    """Register callbacks for runs started in this process while the block runs.

    ``on_spend`` receives the run's :class:`~pipeline.store.jobs.Spend` as the job store has it:
    once when the run opens — a resumed run starts from what its earlier attempts charged — and
    again whenever it changes (a charge is the provider's figure, recorded when it billed).
    """
    global _event_sink, _stage_sink, _on_start, _spend_sink
    saved = (_event_sink, _stage_sink, _on_start, _spend_sink)
    _event_sink, _stage_sink, _on_start, _spend_sink = on_event, on_stage, on_start, on_spend
    try:
        yield
    finally:
        _event_sink, _stage_sink, _on_start, _spend_sink = saved


def current_sink() -> EventSink | None:
    """The registered job-event callback, if any."""
    return _event_sink


def current_stage_sink() -> StageSink | None:
    """The registered stage callback, if any."""
    return _stage_sink


def current_spend_sink() -> SpendSink | None:
    """The registered spend callback, if any."""
    return _spend_sink


def started(session: RunSession) -> None:
    """Tell the observer that a run is open (it may keep the session to cancel on Ctrl-C), and
    connect the spend callback to the run's engine, starting from the spend already in the store.
    """
    if _on_start is not None:
        _on_start(session)
    if _spend_sink is not None:
        if session.engine.on_spend is None:
            session.engine.on_spend = _spend_sink
        # One read of the ledger row: in SQLite's WAL mode a read never waits for a writer.
        _spend_sink(session.store.spend(session.run_id))


def fan_out(*sinks: EventSink | None) -> EventSink:
    """One event callback calling each of ``sinks`` that is set."""
    chosen = [s for s in sinks if s is not None]

    def sink(event: str, request: PlannedRequest, detail: str) -> None:
        for s in chosen:
            s(event, request, detail)

    return sink


def summary(result: RunResult) -> dict[str, Any]:
    """A run's outcome as plain data (the flow's return value)."""
    spend = result.spend
    return {
        "run_id": result.run_id,
        "script": result.script,
        "delivered": result.delivered,
        "selected": list(result.selected),
        "charged_usd": str(spend.charged) if spend else "0",
        "reserved_usd": str(spend.reserved) if spend else "0",
        "limit_usd": str(spend.limit) if spend else None,
        "masters": [
            {
                "narrative": m.narrative,
                "variant": m.variant,
                "pass": m.pass_,
                "path": str(m.path) if m.path else None,
                "duration_s": m.duration_s,
                "qc_passed": m.passed,
                "error": m.error,
            }
            for m in result.masters
        ],
        "jobs_not_completed": [
            {
                "narrative": j.request.narrative,
                "variant": j.request.variant,
                "pass": j.request.pass_,
                "segment": j.request.segment,
                "status": str(j.status),
                "error": j.error,
            }
            for j in result.jobs
            if not j.ok
        ],
        "archive": result.archive.destination if result.archive else None,
        "archive_error": result.archive_error,
        "report": str(result.report) if result.report else None,
        "run_dir": str(result.layout.root),
    }
