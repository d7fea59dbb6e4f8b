"""``klingflow run`` and ``klingflow cancel``.

``run`` prepares the run (:func:`pipeline.render.entry.prepare_run`: loads, checks and plans the
script, settles the run id) and loads the settings before Prefect is imported (bad input fails
in well under a second, nothing spent), then hands both, with the progress bars' hooks, to the
render flow (through :mod:`pipeline.cli.orchestration`, as the library never imports ``flows/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pipeline.cli import run_view
from pipeline.cli.orchestration import (
    EarlyServer,
    Orchestration,
    orchestration,
    release_early_server,
    server_may_be_configured,
    start_early_server,
)
from pipeline.cli.provider_cmds import ProviderChoice
from pipeline.errors import ConfigError, InputNotFound, RunIncomplete
from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipeline.render.entry import PreparedRun
    from pipeline.render.headstart import HeadStart
    from pipeline.render.progress import RunHooks, RunOutcome
    from pipeline.render.session import RunSession
    from pipeline.render.settings import RunSettings

# The run's own modules (engine, job store on SQLAlchemy, providers) are imported where they are
# used: every command imports this module, and `validate` and `plan` need none of them
# (tests/pipeline/cli/test_imports.py).

#: How long Prefect's import waits for a started run's first submit before it goes ahead anyway
#: (a run may spend seconds uploading images or waiting for its turn to submit).
FIRST_SUBMIT_WAIT_S = 2.0

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


def prefect_env(verbose: bool) -> None:
    """Quiet, offline Prefect settings; call before Prefect is imported."""
    # Before Prefect is imported: no analytics (no network here) and quiet logs under the bars.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral server takes seconds to start; on a busy 2-core machine more than Prefect's
    # default 20 s wait.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not verbose:
        # The terminal shows the bars: Prefect's console handler only warnings. Its loggers stay
        # at INFO, so the API handler still sends the flow's logs to the server's Logs tab.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
        # The ephemeral API server (a child process on our terminal) logs its own shutdown
        # races (events it could not flush as it stopped) with tracebacks: noise for a run.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``cancel`` to ``app`` (``status``: :mod:`pipeline.cli.status_cmds`)."""

    @app.command()
    def run(
        script: Annotated[str, typer.Argument(help="Path of the render script (YAML).")],
        provider: Annotated[
            ProviderChoice | None,
            typer.Option(
                help="Who renders and bills: runcomfy, fal, kling or sandbox (default: the script's "
                "provider:, else runcomfy when a token is set, else sandbox)."
            ),
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
                help="With --provider runcomfy, fal or kling: the real provider's code path against a "
                "realistic sandbox in this process, for free (no key needed)."
            ),
        ] = False,
        run_id: Annotated[
            str | None, typer.Option(help="Run id (default: script name + script hash; rerun to resume).")
        ] = None,
        verbose: Annotated[bool, typer.Option(help="Show Prefect's logs.")] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the outcome as one JSON object (progress on stderr).")
        ] = False,
    ) -> None:
        """Render SCRIPT: drafts, selection, finals, masters, archive and report.

        Running the same command again after an interruption resumes: completed clips are
        reused, submitted requests are followed, nothing is bought twice.

        Example: klingflow run configs/weekly-campaign.yaml
        """
        # Until the event loop takes over (below), SIGTERM is what Ctrl-C is: KeyboardInterrupt
        # (exit 130); nothing can have been bought yet.
        from pipeline.cli.stopping import interrupt_before_start

        before = signal.signal(signal.SIGTERM, interrupt_before_start)
        try:
            _run(
                script,
                provider.value if provider else None,
                max_in_flight,
                approve,
                resubmit_unknown,
                run_id,
                verbose,
                rehearse,
                as_json,
            )
        finally:
            release_early_server()
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
        as_json: bool = False,
    ) -> None:
        prefect_env(verbose)
        # Prefect's API server boots in its own process (~3 s, on the other core) while this one
        # loads and plans the script and imports the flows; bad input stops it at once.
        server = start_early_server()
        from pipeline.cli.stopping import Stopper
        from pipeline.providers.selection import choose_provider
        from pipeline.render.entry import Launch, prepare_run
        from pipeline.render.progress import RunHooks

        # BudgetError (exit 3) before anything is bought.
        prepared = prepare_run(script, run_id, provider=provider, rehearse=rehearse)
        plan, rid = prepared.plan, prepared.run_id
        settings = load_settings(run={"max_in_flight": max_in_flight})
        # Who renders and bills, said up front (the flow decides the same way).
        billed_by = choose_provider(
            provider or prepared.loaded.script.provider, settings.provider, rehearse=rehearse
        ).value
        approved = [a.strip() for a in approve.split(",") if a.strip()] if approve else None
        prefect_env(verbose)
        # Prefect's ephemeral mode (no server configured anywhere): the run starts now, while the
        # server boots, and the flow attaches to it (pipeline.render.headstart). With a server,
        # its global limits and run lock come first, so the flow opens the run as before.
        ephemeral = server is not None or not server_may_be_configured()  # (ours sets PREFECT_API_URL)
        early = settings.run.global_limits is not True and ephemeral
        from pipeline.processes import forget_stop_signals, handle_stop_signals

        view = run_view.RunProgress(_err, list(plan.requests), plan.budget.limit)
        sessions: list[RunSession] = []
        _err.print(run_view.header(rid, plan, billed_by, rehearse=rehearse), markup=False, soft_wrap=True)

        hooks = RunHooks(
            on_event=view.on_event,
            on_stage=view.on_stage,
            on_spend=view.on_spend,
            on_start=sessions.append,
            on_waiting=view.on_waiting,
        )

        async def render_until_interrupted() -> RunOutcome:
            # SIGINT and SIGTERM alike, from the first submit on (the flow takes SIGTERM back
            # from Prefect as it starts).
            handle_stop_signals(Stopper(sessions, settings.run, rid))
            head = (
                _head_start(prepared, settings, hooks, provider, approved, resubmit_unknown, rehearse)
                if early
                else None
            )
            try:
                if head is not None:
                    # Prefect's import (~2 s of CPU, holding the GIL) waits for the run's first
                    # submit, which it would slow down by half on a 2-core machine; its server
                    # boots meanwhile in its own process.
                    await head.under_way(FIRST_SUBMIT_WAIT_S)
                # Off the event loop, which follows the requests meanwhile.
                flows = await asyncio.to_thread(_orchestration_ready, server, verbose)
                return await flows.render(
                    Launch(prepared, settings, hooks, head),
                    script=str(Path(script)),
                    provider=provider,
                    max_in_flight=max_in_flight,
                    approve=approved,
                    resubmit_unknown=resubmit_unknown,
                    rehearse=rehearse,
                )
            except BaseException:
                if head is not None and not head.relay.attached:
                    await _abandon(head, settings, rid)
                raise
            finally:
                forget_stop_signals()

        with view.progress:
            summary: RunOutcome = asyncio.run(render_until_interrupted())
        run_view.print_summary(summary, as_json=as_json, provider=billed_by)
        if not summary.delivered:
            raise RunIncomplete(f"run {rid} did not deliver everything (see above); run again to resume")

    @app.command()
    def cancel(
        run: Annotated[str, typer.Argument(help="The run id (see klingflow status).")],
        provider: Annotated[str | None, typer.Option(help="runcomfy, fal, kling or sandbox.")] = None,
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
        from pipeline.cli.stopping import stop_local_run

        stopped = stop_local_run(settings.run, run, keep_requests=keep_requests, wait=wait)
        if not flow_runs and not stopped and not _run_exists(settings.run, run):
            raise InputNotFound(
                f"no run {run!r} under {settings.run.runs_dir.resolve()} (KLINGFLOW_RUNS_DIR)"
            )
        if not keep_requests:
            asyncio.run(_cancel(settings, run, provider, process_stopped=stopped))
        _set_status(settings.run, run, "cancelled")


def _orchestration_ready(server: EarlyServer | None, verbose: bool) -> Orchestration:
    """The flows, imported, and Prefect's temporary server answering (StackError, exit 69, if
    either cannot be had)."""
    flows = orchestration()
    if server is not None:
        server.wait_ready()
    if not verbose:
        # Prefect logs a failed task or flow run with its traceback; the run's own report and the
        # error klingflow prints (with its exit code) say it already, without one. Kept off the
        # terminal only: the server's Logs tab gets them.
        run_view.keep_run_logs_off_the_terminal()
    return flows


def _head_start(
    prepared: PreparedRun,
    settings: Settings,
    hooks: RunHooks,
    provider: str | None,
    approve: list[str] | None,
    resubmit_unknown: bool,
    rehearse: bool,
) -> HeadStart:
    """The run opened and started now, with the limits an ephemeral flow run gives it."""
    from pipeline.render.headstart import HeadStart
    from pipeline.render.limits import LocalLimits
    from pipeline.render.runlock import SubmitGate

    run = settings.run
    limits = SubmitGate(LocalLimits(run.max_in_flight, run.submit_rate_per_s, run.submit_burst))
    return HeadStart.begin(
        prepared,
        settings,
        hooks,
        limits=limits,
        provider=provider,
        approve=approve,
        resubmit_unknown=resubmit_unknown,
        rehearse=rehearse,
    )


async def _abandon(head: HeadStart, settings: Settings, run_id: str) -> None:
    """Prefect did not come up under a started run: no new submit, what is queued cancelled,
    the run marked interrupted, what may still be billed said (a rerun resumes it)."""
    from pipeline.cli.stopping import INTERRUPT_GRACE_S, report_billing, wind_down

    session = head.opened.result() if head.opened.done() and not head.opened.cancelled() else None
    cancelled, billing = await wind_down(session, settings.run, run_id, "interrupted", INTERRUPT_GRACE_S)
    await head.abandon()
    if session is not None:
        _err.print(
            f"\nthe run stopped: {len(cancelled)} queued request(s) cancelled; run the same command "
            f"again to resume run {run_id}",
            soft_wrap=True,
        )
        report_billing(billing)


def _server() -> bool:
    prefect_env(verbose=False)
    return orchestration().server_configured()


def _cancel_flow_runs(run: str, wait: float) -> int:
    """Cancel the run's flow runs on the Prefect server (when one is configured); how many."""
    if not _server():
        return 0
    found = orchestration().cancel_flow_runs(run, wait)
    for name, state in found:
        _out.print(f"flow run {name}: {state}")
    return len(found)


def _run_exists(settings: RunSettings, run: str) -> bool:
    from pipeline.store.jobs import JobStore

    if settings.store_url is None:
        return (settings.runs_dir / run / "jobs.db").is_file()
    store = JobStore.open(settings.store_url)
    try:
        return any(r.run_id == run for r in store.list_runs())
    finally:
        store.close()


def _set_status(settings: RunSettings, run: str, state: str) -> None:
    from pipeline.store.jobs import JobStore

    if not _run_exists(settings, run):
        return
    store = JobStore.open(settings.store_url or f"sqlite:///{settings.runs_dir / run / 'jobs.db'}")
    try:
        with contextlib.suppress(Exception):  # a run whose ledger row was never written
            store.set_run_status(run, state)
    finally:
        store.close()


async def _cancel(
    all_settings: Settings, run_id: str, provider: str | None, *, process_stopped: bool
) -> None:
    """Cancel the run's requests still queued at the provider; say which keep billing."""
    from pipeline.providers.selection import open_provider
    from pipeline.store.jobs import JobStatus, JobStore

    settings = all_settings.run
    if not _run_exists(settings, run_id):
        return
    store = JobStore.open(settings.store_url or f"sqlite:///{settings.runs_dir / run_id / 'jobs.db'}")
    try:
        pending = [j for j in store.jobs_of(run_id) if j.status == JobStatus.SUBMITTED and j.request_id]
        if not pending:
            _out.print(f"run {run_id}: nothing submitted is waiting at the provider")
            return
        # fal and Kling are real providers too: their queued requests are cancelled there.
        real = provider in ("runcomfy", "fal", "kling")
        if not real and settings.sandbox_url is None and not all_settings.provider.has_token:
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
