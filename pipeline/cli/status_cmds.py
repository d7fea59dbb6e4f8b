"""``klingflow status``: every run, or one run's jobs, as tables or as one JSON object.

Runs are found in the job store of each run directory under ``KLINGFLOW_RUNS_DIR`` (default
``./.klingflow/runs``) and in the shared store ``KLINGFLOW_STORE_URL`` when one is set; with a
Prefect server, the render flow runs too. A run paused in Prefect for a person's choice says
``waiting for choice``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pipeline.cli.orchestration import FlowRunRow, orchestration
from pipeline.cli.output import console, print_json, usd
from pipeline.cli.run_cmds import prefect_env
from pipeline.errors import InputNotFound, StackError
from pipeline.money import format_usd
from pipeline.settings import load_settings

if TYPE_CHECKING:  # the engine and the job store (SQLAlchemy) load with this command, not with every one
    from pipeline.render.settings import RunSettings
    from pipeline.store.jobs import Job, JobStore, RunSummary


def register(app: typer.Typer) -> None:
    """Add ``status`` to ``app``."""

    @app.command()
    def status(
        run: Annotated[str | None, typer.Argument(help="A run id; default: every run.")] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object instead of tables.")
        ] = False,
    ) -> None:
        """Show runs (money, jobs by state) or, for one RUN, each of its jobs.

        Looks under KLINGFLOW_RUNS_DIR (default ./.klingflow/runs) and in KLINGFLOW_STORE_URL.
        Exit 66 when RUN is found nowhere.

        Example: klingflow status weekly-campaign-049373e34d --json
        """
        settings = load_settings().run
        flow_runs = _flow_runs(run)
        stores = _stores(settings)
        try:
            if run is None:
                _show_runs(settings, stores, flow_runs, as_json)
            else:
                _show_run(settings, stores, run, flow_runs, as_json)
        finally:
            for store in stores:
                store.close()


def _where(settings: RunSettings) -> str:
    where = f"{settings.runs_dir.resolve()} (KLINGFLOW_RUNS_DIR)"
    return where + (" or the store KLINGFLOW_STORE_URL" if settings.store_url else "")


def _stores(settings: RunSettings) -> list[JobStore]:
    """The shared store (when set) and every run directory's own store."""
    from pipeline.store.jobs import JobStore

    stores = [JobStore.open(settings.store_url)] if settings.store_url else []
    if settings.runs_dir.is_dir():
        stores += [JobStore.open(f"sqlite:///{db}") for db in sorted(settings.runs_dir.glob("*/jobs.db"))]
    return stores


def _runs(stores: list[JobStore]) -> list[tuple[JobStore, RunSummary]]:
    """Every run once (the first store that has it wins), newest first per store."""
    seen: set[str] = set()
    found = []
    for store in stores:
        for r in store.list_runs():
            if r.run_id not in seen:
                seen.add(r.run_id)
                found.append((store, r))
    return found


def _state(summary: RunSummary, flow_runs: list[FlowRunRow]) -> str:
    """The run's status; a flow run paused for input means it waits for a person's choice."""
    if any(f.run_id == summary.run_id and f.state == "Paused" for f in flow_runs):
        from pipeline.render.progress import WAITING_FOR_CHOICE

        return WAITING_FOR_CHOICE
    return summary.status


def _run_json(summary: RunSummary, state: str) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "script": summary.script,
        "status": state,
        "jobs": dict(sorted(summary.jobs.items())),
        "charged_usd": usd(summary.charged),
        "reserved_usd": usd(summary.reserved),
        "limit_usd": usd(summary.limit),
        "created_at": summary.created_at,
    }


def _job_json(job: Job) -> dict[str, Any]:
    return {
        "narrative": job.narrative,
        "variant": job.variant,
        "pass": job.pass_,
        "segment": job.segment,
        "status": job.status.value,
        "attempts": job.attempts,
        "request_id": job.request_id,
        "charged_usd": usd(job.charged),
        "error": job.error,
    }


def _flow_json(row: FlowRunRow) -> dict[str, Any]:
    data = asdict(row)
    data["started"] = row.started.isoformat() if row.started else None
    return data


def _show_runs(
    settings: RunSettings, stores: list[JobStore], flow_runs: list[FlowRunRow], as_json: bool
) -> None:
    runs = _runs(stores)
    if as_json:
        print_json(
            {
                "runs_dir": str(settings.runs_dir.resolve()),
                "runs": [_run_json(r, _state(r, flow_runs)) for _, r in runs],
                "flow_runs": [_flow_json(f) for f in flow_runs],
            }
        )
        return
    out = console()
    _print_flow_runs(flow_runs, None)
    if not runs:
        out.print(f"no runs under {_where(settings)}", markup=False)
        return
    table = Table("run", "script", "status", "jobs", "charged", "reserved", "limit")
    for _, r in runs:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.jobs.items()))
        table.add_row(
            r.run_id, r.script, _state(r, flow_runs), counts,
            format_usd(r.charged), format_usd(r.reserved), format_usd(r.limit),
        )  # fmt: skip
    out.print(table)


def _show_run(
    settings: RunSettings, stores: list[JobStore], run: str, flow_runs: list[FlowRunRow], as_json: bool
) -> None:
    found = next(((s, r) for s, r in _runs(stores) if r.run_id == run), None)
    if found is None:
        raise InputNotFound(f"no run {run!r} under {_where(settings)}")
    store, summary = found
    jobs = store.jobs_of(run)
    state = _state(summary, flow_runs)
    if as_json:
        print_json(
            {
                **_run_json(summary, state),
                "job_list": [_job_json(j) for j in jobs],
                "flow_runs": [_flow_json(f) for f in flow_runs if f.run_id == run],
            }
        )
        return
    out = console()
    _print_flow_runs(flow_runs, run)
    out.print(f"run {run} ({summary.script}): {state}", markup=False)
    table = Table("narrative", "variant", "pass", "seg", "status", "attempts", "request", "error")
    for j in jobs:
        table.add_row(
            j.narrative, j.variant, j.pass_, str(j.segment), j.status.value,
            str(j.attempts), j.request_id or "", j.error or "",
        )  # fmt: skip
    out.print(table)
    out.print(
        f"charged {format_usd(summary.charged)}, reserved {format_usd(summary.reserved)}, "
        f"limit {format_usd(summary.limit)}"
    )


def _flow_runs(run: str | None) -> list[FlowRunRow]:
    """The render flow runs on the Prefect server (every worker's), when one is configured."""
    prefect_env(verbose=False)
    flows = orchestration()
    if not flows.server_configured():
        return []
    try:
        return [f for f in flows.flow_runs() if run is None or f.run_id == run]
    except StackError as exc:
        console(stderr=True).print(f"warning: {exc}", markup=False)  # the job store still answers
        return []


def _print_flow_runs(flow_runs: list[FlowRunRow], run: str | None) -> None:
    if not flow_runs:
        return
    table = Table("flow run", "run", "state", "deployment", "started", "pool", title="Prefect flow runs")
    for v in flow_runs:
        if run is None or v.run_id == run:
            started = v.started.strftime("%Y-%m-%d %H:%M:%S") if v.started else ""
            table.add_row(v.name, v.run_id or "", v.state, v.deployment or "", started, v.worker or "")
    console().print(table)
