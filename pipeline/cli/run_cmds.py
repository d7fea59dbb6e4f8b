"""``klingflow run``, ``klingflow status`` and ``klingflow cancel``.

``run`` prepares the run (:func:`pipeline.render.entry.prepare_run`: loads, checks and plans the
script, settles the run id) and loads the settings before Prefect is imported (bad input fails
in well under a second, nothing spent), then hands both, with the progress bars' hooks, to the
render flow (through :mod:`pipeline.cli.orchestration`, as the library never imports ``flows/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from pipeline.cli.orchestration import orchestration
from pipeline.cli.stopping import Stopper, interrupt_before_start, stop_local_run
from pipeline.errors import ConfigError, RunIncomplete, StackError
from pipeline.money import format_usd
from pipeline.planning.plan import PlannedRequest
from pipeline.render.entry import Launch, prepare_run
from pipeline.render.progress import RunHooks, RunOutcome
from pipeline.render.settings import RunSettings
from pipeline.settings import Settings, load_settings
from pipeline.store.jobs import JobStatus, JobStore, Spend

if TYPE_CHECKING:
    from pipeline.render.session import RunSession

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


class RunProgress:
    """Live bars per pass (queued, running, done, failed) and spend against the budget."""

    def __init__(self, console: Console, requests: list[PlannedRequest], limit: Decimal) -> None:
        self.limit = limit
        self.spent = Decimal(0)
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
        self.progress.update(
            self.money,
            completed=float(self.spent),
            detail=f"${self.spent:.2f} of ${self.limit:.2f}" + (f"   [{self.stage}]" if self.stage else ""),
        )

    def on_event(self, event: str, request: PlannedRequest, detail: str) -> None:
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
        """The run's charged money as the job store has it: a resumed run starts from what its
        earlier attempts charged, and a charge is the provider's figure (clip downloaded or not)."""
        self.spent = spend.charged
        self._refresh()

    def on_stage(self, stage: str) -> None:
        self.stage = stage
        self._refresh()


def prefect_env(verbose: bool) -> None:
    """Quiet, offline Prefect settings; call before Prefect is imported."""
    # Before Prefect is imported: no analytics (no network here) and quiet logs under the bars.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral server takes seconds to start; on a busy 2-core machine more than Prefect's
    # default 20 s wait.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # The ephemeral API server (a child process on our terminal) logs its own shutdown
        # races (events it could not flush as it stopped) with tracebacks: noise for a run.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def register(app: typer.Typer) -> None:
    """Add ``run``, ``status`` and ``cancel`` to ``app``."""

    @app.command()
    def run(
        script: Annotated[str, typer.Argument(help="Path of the render script (YAML).")],
        provider: Annotated[
            str | None, typer.Option(help="sandbox or runcomfy (default: runcomfy when a token is set).")
        ] = None,
        max_in_flight: Annotated[
            int | None, typer.Option(min=1, help="Requests in flight at the provider at once.")
        ] = None,
        approve: Annotated[
            str | None, typer.Option(help="Variants to finish, e.g. a,c (for select: manual).")
        ] = None,
        resubmit_unknown: Annotated[
            bool, typer.Option(help="Resubmit jobs whose submit answer was lost (may pay twice).")
        ] = False,
        rehearse: Annotated[
            bool,
            typer.Option(
                help="With --provider runcomfy: the real provider's code path against a realistic "
                "sandbox in this process, for free (no token needed)."
            ),
        ] = False,
        run_id: Annotated[
            str | None, typer.Option(help="Run id (default: script name + script hash; rerun to resume).")
        ] = None,
        verbose: Annotated[bool, typer.Option(help="Show Prefect's logs.")] = False,
    ) -> None:
        """Render SCRIPT: drafts, selection, finals, masters, archive and report.

        Running the same command again after an interruption resumes: completed clips are
        reused, submitted requests are followed, nothing is bought twice.

        Example: klingflow run configs/weekly-campaign.yaml
        """
        # Until the event loop takes over (below), SIGTERM is what Ctrl-C is: KeyboardInterrupt
        # (exit 130); nothing can have been bought yet.
        before = signal.signal(signal.SIGTERM, interrupt_before_start)
        try:
            _run(script, provider, max_in_flight, approve, resubmit_unknown, run_id, verbose, rehearse)
        finally:
            signal.signal(signal.SIGTERM, before)

    def _run(
        script: str,
        provider: str | None,
        max_in_flight: int | None,
        approve: str | None,
        resubmit_unknown: bool,
        run_id: str | None,
        verbose: bool,
        rehearse: bool = False,
    ) -> None:
        if provider not in (None, "sandbox", "runcomfy"):
            raise ConfigError(f"--provider must be sandbox or runcomfy (got {provider!r})")
        prepared = prepare_run(script, run_id)  # BudgetError (exit 3) before anything starts
        plan, rid = prepared.plan, prepared.run_id
        settings = load_settings(run={"max_in_flight": max_in_flight})
        approved = [a.strip() for a in approve.split(",") if a.strip()] if approve else None
        prefect_env(verbose)
        flows = orchestration()
        from pipeline.processes import forget_stop_signals, handle_stop_signals

        if not verbose:
            # Prefect logs a failed task or flow run with its traceback; the run's own report and
            # the error klingflow prints (with its exit code) say it already, without one.
            for name in ("prefect.task_runs", "prefect.flow_runs"):
                logging.getLogger(name).setLevel(logging.CRITICAL)

        view = RunProgress(_err, list(plan.requests), plan.budget.limit)
        sessions: list[RunSession] = []
        _err.print(
            f"run {rid}: {len(plan.requests)} requests planned, ${plan.total_cents:.2f} of ${plan.budget.limit:.2f}"
        )

        hooks = RunHooks(
            on_event=view.on_event, on_stage=view.on_stage, on_spend=view.on_spend, on_start=sessions.append
        )

        async def render_until_interrupted() -> RunOutcome:
            flow = asyncio.ensure_future(
                flows.render(
                    Launch(prepared, settings, hooks),
                    script=str(Path(script)),
                    provider=provider,
                    max_in_flight=max_in_flight,
                    approve=approved,
                    resubmit_unknown=resubmit_unknown,
                    rehearse=rehearse,
                )
            )
            # SIGINT and SIGTERM alike (the flow takes SIGTERM back from Prefect as it starts).
            handle_stop_signals(Stopper(sessions, settings.run, rid))
            try:
                return await flow
            finally:
                forget_stop_signals()

        with view.progress:
            summary: RunOutcome = asyncio.run(render_until_interrupted())
        _print_summary(summary)
        if not summary.delivered:
            raise RunIncomplete(f"run {rid} did not deliver everything (see above); run again to resume")

    @app.command()
    def status(
        run: Annotated[str | None, typer.Argument(help="A run id; default: every run.")] = None,
    ) -> None:
        """Show runs (money, jobs by state) or, for one RUN, each of its jobs.

        Example: klingflow status weekly-campaign-049373e34d
        """
        settings = load_settings().run
        _print_flow_runs(run)
        stores = _stores(settings)
        if not stores:
            _out.print(f"no runs under {settings.runs_dir}")
            return
        try:
            if run is None:
                table = Table("run", "script", "status", "jobs", "charged", "reserved", "limit")
                for store in stores:
                    for r in store.list_runs():
                        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.jobs.items()))
                        table.add_row(
                            r.run_id, r.script, r.status, counts,
                            f"${r.charged:.2f}", f"${r.reserved:.2f}", f"${r.limit:.2f}",
                        )  # fmt: skip
                _out.print(table)
                return
            for store in stores:
                jobs = store.jobs_of(run)
                if jobs:
                    table = Table(
                        "narrative", "variant", "pass", "seg", "status", "attempts", "request", "error"
                    )
                    for j in jobs:
                        table.add_row(
                            j.narrative, j.variant, j.pass_, str(j.segment), j.status.value,
                            str(j.attempts), j.request_id or "", (j.error or "")[:60],
                        )  # fmt: skip
                    _out.print(table)
                    spend = store.spend(run)
                    _out.print(
                        f"charged ${spend.charged:.2f}, reserved ${spend.reserved:.2f}, limit ${spend.limit:.2f}"
                    )
                    return
            raise ConfigError(f"no run {run!r} under {settings.runs_dir}")
        finally:
            for store in stores:
                store.close()

    @app.command()
    def cancel(
        run: Annotated[str, typer.Argument(help="The run id (see klingflow status).")],
        provider: Annotated[str | None, typer.Option(help="sandbox or runcomfy.")] = None,
        keep_requests: Annotated[
            bool, typer.Option(help="Leave its requests at the provider, for a resume to follow.")
        ] = False,
        wait: Annotated[
            float,
            typer.Option(
                min=0, help="Seconds to let the run's process (or flow run's worker) stop it before forcing."
            ),
        ] = 15.0,
    ) -> None:
        """Stop RUN: the process rendering it on this machine, its flow runs on the Prefect
        server, and its requests still queued at the provider (say which keep running and billing).

        A local `klingflow run` gets SIGTERM and stops as on Ctrl-C: no new submit, its queued
        requests cancelled, exit 130, state "cancelled" (SIGKILL if it does not stop within
        --wait). A flow run whose worker died is marked cancelled by force, so that klingflow
        resume can start it on another worker.

        Example: klingflow cancel weekly-campaign-049373e34d
        """
        settings = load_settings()
        flow_runs = _cancel_flow_runs(run, wait)
        stopped = stop_local_run(settings.run, run, keep_requests=keep_requests, wait=wait)
        if not flow_runs and not stopped and not _run_exists(settings.run, run):
            raise ConfigError(f"no run {run!r} under {settings.run.runs_dir}")
        if not keep_requests:
            asyncio.run(_cancel(settings, run, provider, process_stopped=stopped))
        _set_status(settings.run, run, "cancelled")


def _server() -> bool:
    prefect_env(verbose=False)
    return orchestration().server_configured()


def _print_flow_runs(run: str | None) -> None:
    """The render flow runs on the Prefect server (every worker's), when one is configured."""
    if not _server():
        return
    try:
        found = orchestration().flow_runs()
    except StackError as exc:
        _err.print(f"warning: {exc}", markup=False)  # the job store below still answers
        return
    table = Table("flow run", "run", "state", "deployment", "started", "pool", title="Prefect flow runs")
    for v in found:
        if run is None or v.run_id == run:
            started = v.started.strftime("%Y-%m-%d %H:%M:%S") if v.started else ""
            table.add_row(v.name, v.run_id or "", v.state, v.deployment or "", started, v.worker or "")
    _out.print(table)


def _cancel_flow_runs(run: str, wait: float) -> int:
    """Cancel the run's flow runs on the Prefect server (when one is configured); how many."""
    if not _server():
        return 0
    found = orchestration().cancel_flow_runs(run, wait)
    for name, state in found:
        _out.print(f"flow run {name}: {state}")
    return len(found)


def _run_exists(settings: RunSettings, run: str) -> bool:
    if settings.store_url is None:
        return (settings.runs_dir / run / "jobs.db").is_file()
    store = JobStore.open(settings.store_url)
    try:
        return any(r.run_id == run for r in store.list_runs())
    finally:
        store.close()


def _set_status(settings: RunSettings, run: str, state: str) -> None:
    if not _run_exists(settings, run):
        return
    store = JobStore.open(settings.store_url or f"sqlite:///{settings.runs_dir / run / 'jobs.db'}")
    try:
        with contextlib.suppress(Exception):  # a run whose ledger row was never written
            store.set_run_status(run, state)
    finally:
        store.close()


def _stores(settings: RunSettings) -> list[JobStore]:
    if settings.store_url:
        return [JobStore.open(settings.store_url)]
    if not settings.runs_dir.is_dir():
        return []
    return [JobStore.open(f"sqlite:///{db}") for db in sorted(settings.runs_dir.glob("*/jobs.db"))]


async def _cancel(
    all_settings: Settings, run_id: str, provider: str | None, *, process_stopped: bool
) -> None:
    """Cancel the run's requests still queued at the provider; say which keep billing."""
    from pipeline.providers.selection import open_provider

    settings = all_settings.run
    if not _run_exists(settings, run_id):
        return
    store = JobStore.open(settings.store_url or f"sqlite:///{settings.runs_dir / run_id / 'jobs.db'}")
    try:
        pending = [j for j in store.jobs_of(run_id) if j.status == JobStatus.SUBMITTED and j.request_id]
        if not pending:
            _out.print(f"run {run_id}: nothing submitted is waiting at the provider")
            return
        if provider != "runcomfy" and settings.sandbox_url is None and not all_settings.provider.has_token:
            if process_stopped:
                # Its sandbox lived in the process just stopped, and ended with it: a sandbox
                # bills nobody, and a rerun resubmits what it never finished.
                _out.print(
                    f"run {run_id}: {len(pending)} request(s) ended with the in-process sandbox of "
                    "the stopped process"
                )
                return
            raise ConfigError(
                "the run used an in-process sandbox that ended with it; set KLINGFLOW_SANDBOX_URL "
                "to the sandbox serving its requests"
            )
        async with open_provider(provider, all_settings.provider, sandbox_url=settings.sandbox_url) as opened:
            for job in pending:
                assert job.request_id is not None
                outcome = await opened.provider.cancel(job.request_id)
                if outcome.cancelled:
                    store.mark_ended(job.key, JobStatus.CANCELLED, error="cancelled by klingflow cancel")
                    _out.print(
                        f"cancelled  {job.narrative}/{job.variant}/{job.pass_} {job.segment}: {job.request_id}"
                    )
                else:
                    _out.print(
                        f"still billing  {job.narrative}/{job.variant}/{job.pass_} {job.segment}: "
                        f"{job.request_id} is already running and cannot be cancelled"
                    )
    finally:
        store.close()


def _print_summary(summary: RunOutcome) -> None:
    table = Table("narrative", "variant", "pass", "length", "QC")
    for m in summary.masters:
        qc = "passed" if m.qc_passed else ("failed" if m.path and not m.error else "NOT DELIVERED")
        length = f"{m.duration_s:.2f} s" if m.path else "-"
        table.add_row(m.narrative, m.variant, m.pass_, length, qc)
    _out.print(table)
    for m in summary.masters:
        if m.error:
            _out.print(f"[red]not delivered:[/] {m.narrative}/{m.variant}/{m.pass_}: {m.error}")
    for job in summary.jobs_not_completed:
        _out.print(
            f"[yellow]not completed:[/] {job.narrative}/{job.variant}/{job.pass_} "
            f"segment {job.segment}: {job.status} — {job.error}"
        )
    _out.print(
        f"spend: {format_usd(summary.charged_usd)} charged of {format_usd(summary.limit_usd or Decimal(0))}"
    )
    _out.print(f"masters and manifests: {summary.run_dir}/masters")
    if summary.archive:
        _out.print(f"archived to: {summary.archive} (under {summary.script}/{summary.run_id}/)")
    for item in summary.archive_refused:
        _out.print(f"[red]not archived:[/] {escape(item.path)}: {escape(item.error)}")
    if summary.archive_error:
        _out.print(f"[red]archive failed:[/] {summary.archive_error}")
    _out.print(f"report: {summary.report}")
    sys.stdout.flush()
