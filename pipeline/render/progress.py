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
from pipeline.render.engine import EventSink

if TYPE_CHECKING:
    from pipeline.render.run import RunResult, StageSink
    from pipeline.render.session import RunSession

_event_sink: EventSink | None = None
_stage_sink: StageSink | None = None
_on_start: Callable[[RunSession], None] | None = None


@contextlib.contextmanager
def observe(
    on_event: EventSink | None = None,
    on_stage: StageSink | None = None,
    on_start: Callable[[RunSession], None] | None = None,
) -> Iterator[None]:
    """Register callbacks for runs started in this process while the block runs."""
    global _event_sink, _stage_sink, _on_start
    saved = (_event_sink, _stage_sink, _on_start)
    _event_sink, _stage_sink, _on_start = on_event, on_stage, on_start
    try:
        yield
    finally:
        _event_sink, _stage_sink, _on_start = saved


def current_sink() -> EventSink | None:
    """The registered job-event callback, if any."""
    return _event_sink


def current_stage_sink() -> StageSink | None:
    """The registered stage callback, if any."""
    return _stage_sink


def started(session: RunSession) -> None:
    """Tell the observer that a run is open (it may keep the session to cancel on Ctrl-C)."""
    if _on_start is not None:
        _on_start(session)


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
