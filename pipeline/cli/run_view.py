"""What ``klingflow run`` shows: its header, live bars, the wait for a choice, and the summary.

Progress and messages go to stderr; the summary to stdout, as tables or (``--json``) as one
JSON object, so that ``klingflow run --json SCRIPT > outcome.json`` scripts well.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from pipeline.cli.output import console, print_json, usd
from pipeline.money import billing_note, format_usd
from pipeline.planning.plan import PlannedRequest, RenderPlan

if TYPE_CHECKING:  # the engine and the job store load with the run, not with every command
    from pipeline.render.progress import RunOutcome
    from pipeline.store.jobs import Spend


def header(run_id: str, plan: RenderPlan, provider: str, *, rehearse: bool) -> str:
    """The run's first line: what it will buy, and who bills it (or that it is free)."""
    return (
        f"run {run_id}: {len(plan.requests)} requests planned, {format_usd(plan.total_cents)} "
        f"of {format_usd(plan.budget.limit)}; {billing_note(provider, plan.total_cents, rehearse=rehearse)}"
    )


class RunProgress:
    """Live bars per pass (queued, running, done, failed) and money against the budget."""

    def __init__(self, console: Console, requests: list[PlannedRequest], limit: Decimal) -> None:
        self.limit = limit
        from pipeline.store.jobs import Spend

        self.spend = Spend(limit, Decimal(0), Decimal(0))
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.state: dict[tuple[str, str, str, int], str] = {}
        self.progress = Progress(
            TextColumn("{task.description:<7}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        )
        self.bars: dict[str, TaskID] = {}
        for pass_ in ("draft", "final"):
            total = sum(1 for r in requests if r.pass_ == pass_)
            if total:
                self.counts[pass_]["queued"] = total
                self.bars[pass_] = self.progress.add_task(pass_, total=total, detail="")
        self.money = self.progress.add_task("spend", total=float(limit), detail="")
        self.stage = ""
        self._refresh()

    def _refresh(self) -> None:
        for pass_, bar in self.bars.items():
            c = self.counts[pass_]
            detail = f"queued {c['queued']}  running {c['running']}  done {c['done']}  failed {c['failed']}"
            self.progress.update(bar, completed=c["done"] + c["failed"], detail=detail)
        # Reserved money is said too: "$0.00" alone while requests are out looked like nothing
        # was at stake.
        money = f"{format_usd(self.spend.charged)} charged"
        if self.spend.reserved:
            money += f", {format_usd(self.spend.reserved)} reserved"
        self.progress.update(
            self.money,
            completed=float(self.spend.charged),
            detail=f"{money} of {format_usd(self.limit)}" + (f"   [{self.stage}]" if self.stage else ""),
        )

    def on_event(self, event: str, request: PlannedRequest, detail: str) -> None:
        """A job's event moves it between the bar's columns."""
        key = (request.narrative, request.variant, request.pass_, request.segment)
        before = self.state.get(key, "queued")
        after = {"submitted": "running", "resumed": "running", "done": "done", "reused": "done"}.get(
            event, "failed" if event in {"failed", "skipped", "unknown"} else before
        )
        if event == "regenerate":
            after = "running"
        if after != before:
            counts = self.counts[request.pass_]
            counts[before] -= 1
            counts[after] += 1
            self.state[key] = after
        self._refresh()

    def on_spend(self, spend: Spend) -> None:
        """The run's money as the job store has it: a resumed run starts from what its earlier
        attempts charged, and a charge is the provider's figure (clip downloaded or not)."""
        self.spend = spend
        self._refresh()

    def on_stage(self, stage: str) -> None:
        """The stage the run has reached, shown beside the money."""
        self.stage = stage
        self._refresh()

    def on_waiting(self, message: str) -> None:
        """The run waits for a person: said above the bars, which stand still meanwhile."""
        self.stage = "waiting for your choice"
        self.progress.console.print(message, markup=False, highlight=False)
        self._refresh()


def outcome_to_dict(summary: RunOutcome, provider: str | None = None) -> dict[str, Any]:
    """The run's outcome as plain JSON data (``klingflow run --json``), money in USD numbers."""
    data = asdict(summary)
    for key in ("charged_usd", "reserved_usd", "limit_usd"):
        data[key] = usd(getattr(summary, key))
    for master in data["masters"]:
        master["pass"] = master.pop("pass_")
    for job in data["jobs_not_completed"]:
        job["pass"] = job.pop("pass_")
    data["selected"] = list(summary.selected)
    return {"provider": provider, **data}


def print_summary(summary: RunOutcome, *, as_json: bool = False, provider: str | None = None) -> None:
    """The run's outcome on stdout: tables and lines, or one JSON object."""
    if as_json:
        print_json(outcome_to_dict(summary, provider))
        return
    out = console()
    table = Table("narrative", "variant", "pass", "length", "QC")
    for m in summary.masters:
        qc = "passed" if m.qc_passed else ("failed" if m.path and not m.error else "NOT DELIVERED")
        length = f"{m.duration_s:.2f} s" if m.path else "-"
        table.add_row(m.narrative, m.variant, m.pass_, length, qc)
    out.print(table)
    for m in summary.masters:
        if m.error:
            out.print(f"[red]not delivered:[/] {m.narrative}/{m.variant}/{m.pass_}: {escape(m.error)}")
    for job in summary.jobs_not_completed:
        out.print(
            f"[yellow]not completed:[/] {job.narrative}/{job.variant}/{job.pass_} "
            f"segment {job.segment}: {job.status} — {escape(job.error or '')}"
        )
    out.print(
        f"spend: {format_usd(summary.charged_usd)} charged of {format_usd(summary.limit_usd or Decimal(0))}"
    )
    out.print(f"masters and manifests: {summary.run_dir}/masters", markup=False)
    if summary.archive:
        out.print(f"archived to: {summary.archive} (under {summary.script}/{summary.run_id}/)", markup=False)
    for item in summary.archive_refused:
        out.print(f"[red]not archived:[/] {escape(item.path)}: {escape(item.error)}")
    if summary.archive_error:
        out.print(f"[red]archive failed:[/] {escape(summary.archive_error)}")
    out.print(f"report: {summary.report}", markup=False)


class _NotRunLogs(logging.Filter):
    """Drops the flow's and task runs' own records (they are for the server's Logs tab)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(RUN_LOGGERS)


#: Prefect's loggers of flow and task runs (their API handler sends them to the server).
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def keep_run_logs_off_the_terminal() -> None:
    """Keep flow and task run logs off the terminal's console handlers, not off the API's."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not any(
            isinstance(f, _NotRunLogs) for f in handler.filters
        ):
            handler.addFilter(_NotRunLogs())
