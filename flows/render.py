"""The render flow: a render script to archived masters, as one Prefect flow run.

Read the body of :func:`render` for the story: load and plan (or take what the command line
prepared, :mod:`pipeline.render.entry`), publish the plan, open the run with its hooks,
generate every job as a task run under the provider limits, make masters, choose finals,
archive, publish what came out. The work itself lives in ``pipeline/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import (
    acreate_progress_artifact,
    aupdate_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

from flows import artifacts, choice, stages
from flows.limits import PrefectLimits, ensure_limits, run_lock, server_configured
from flows.operations import run_tag
from pipeline.errors import DiskFull
from pipeline.money import format_usd
from pipeline.planning.plan import PlannedRequest
from pipeline.processes import reclaim_stop_signals
from pipeline.providers.selection import choose_provider
from pipeline.render import progress
from pipeline.render.engine import JobResult
from pipeline.render.entry import Launch, PreparedRun, open_prepared, prepare_run, resolve_run_id
from pipeline.render.headstart import HeadStart
from pipeline.render.limits import Limits, LocalLimits
from pipeline.render.masters import MasterOutcome
from pipeline.render.progress import RunHooks, RunOutcome, fan_out
from pipeline.render.runlock import SubmitGate
from pipeline.settings import Settings, load_settings


def _flow_run_name() -> str:
    params = flow_run.parameters
    script = Path(str(params.get("script", "script"))).stem
    return f"{script}-{params.get('run_id') or 'default'}"


@task(name="generate", cache_policy=NO_CACHE, task_run_name="{label}")
async def generate(label: str, job: Callable[[], Awaitable[JobResult]]) -> JobResult:
    """One generation job (submit or resume, wait, download, verify) as one task run.

    Not retried by Prefect: the provider client retries what is free to retry, and the engine
    regenerates failed generations within the budget; a task retry could pay twice.
    """
    return await job()


async def _as_task(request: PlannedRequest, job: Callable[[], Awaitable[JobResult]]) -> JobResult:
    label = f"{request.pass_}-{request.narrative}-{request.variant}-{request.segment}"
    return await generate(label, job)


async def _scheduled_run_id(prepared: PreparedRun) -> str | None:
    """A run of its own for each firing of a deployment's schedule: ``{default id}-{UTC time}``.

    Without it, an unchanged script would "resume" last week's finished run and render nothing.
    A flow run started by hand (or resumed) keeps the script's default id, or the one given.
    """
    if flow_run.id is None:
        return None
    async with get_client() as client:
        current = await client.read_flow_run(UUID(str(flow_run.id)))
    if current.deployment_id is None or not current.auto_scheduled or current.expected_start_time is None:
        return None
    stamp = current.expected_start_time.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    return f"{prepared.default_run_id}-{stamp}"


async def _label_flow_run(run: str) -> None:
    """Name the flow run after its klingflow run id and tag it ``run:{id}`` (for status/cancel/resume)."""
    if flow_run.id is None:
        return
    async with get_client() as client:
        current = await client.read_flow_run(UUID(str(flow_run.id)))
        tags = sorted({*current.tags, run_tag(run)})
        await client.update_flow_run(current.id, name=run, tags=tags)


@flow(name="klingflow-render", flow_run_name=_flow_run_name, log_prints=False)
async def render(
    script: str,
    run_id: str | None = None,
    provider: str | None = None,
    max_in_flight: int | None = None,
    approve: list[str] | None = None,
    resubmit_unknown: bool = False,
    rehearse: bool = False,
    launch: Launch | None = None,
) -> RunOutcome:
    """Render ``script`` end to end; return a summary (masters, spend, what was not delivered).

    ``launch`` comes from a caller in this process (``klingflow run``): the run it already
    prepared, the settings it loaded and the hooks it watches with. A deployment's flow run has
    only the plain parameters, and prepares the run and loads the settings here.
    """
    # Prefect has just put its own SIGTERM handler in place of the command line's: take it back,
    # so that SIGTERM stops the run as Ctrl-C does (a no-op when nobody registered one).
    reclaim_stop_signals()
    head: HeadStart | None = None
    if launch is not None:
        prepared, all_settings, hooks, head = launch.prepared, launch.settings, launch.hooks, launch.head
    else:
        prepared = prepare_run(script, run_id, provider=provider, rehearse=rehearse)
        scheduled = None if run_id else await _scheduled_run_id(prepared)
        if scheduled is not None:
            prepared = PreparedRun(prepared.loaded, prepared.plan, resolve_run_id(prepared.loaded, scheduled))
        all_settings, hooks = load_settings(run={"max_in_flight": max_in_flight}), RunHooks()
    run, plan, settings = prepared.run_id, prepared.plan, all_settings.run
    await _label_flow_run(run)
    await artifacts.publish_plan(plan, run)

    provider_name = choose_provider(
        provider or prepared.loaded.script.provider, all_settings.provider, rehearse=rehearse
    ).value
    stages.log_plan(plan, run, provider_name, rehearse=rehearse)
    if head is not None:
        # Opened and started by `klingflow run` while Prefect's temporary server booted
        # (pipeline.render.headstart), with the local limits any ephemeral run has: the flow
        # attaches to it, and its later jobs and stages become this flow run's task runs.
        return await _guarded(_render(prepared, all_settings, hooks, head=head), settings.runs_dir / run)
    local = LocalLimits(settings.max_in_flight, settings.submit_rate_per_s, settings.submit_burst)
    # Global limits live on the API server: with a configured server they hold across runs and
    # workers. Prefect's ephemeral mode has no one to share them with, and a lease orphaned by a
    # killed run would stall its resumption, so there the local limits do the job alone.
    shared = settings.global_limits if settings.global_limits is not None else server_configured()
    limits = SubmitGate(
        PrefectLimits(local, *await ensure_limits(provider_name, settings)) if shared else local
    )

    async def locked() -> RunOutcome:
        async with run_lock(run) if shared else contextlib.nullcontext():
            opening = _Opening(provider, limits, approve, resubmit_unknown, rehearse)
            return await _render(prepared, all_settings, hooks, opening=opening)

    return await _guarded(locked(), settings.runs_dir / run)


async def _guarded(work: Awaitable[RunOutcome], run_dir: Path) -> RunOutcome:
    """``work``, with a full disk met anywhere in it said as DiskFull (exit 73)."""
    try:
        return await work
    except Exception as exc:
        full = _disk_full(exc, run_dir)
        if full is None:
            raise
        raise full from exc


#: errno values that mean the device (or the user's quota) has no room for what is written.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _disk_full(exc: BaseException, run_dir: Path) -> DiskFull | None:
    """A full disk met anywhere in the run (ffmpeg's pieces, a download, the job store), as
    DiskFull naming the directory; None for any other error.

    Writers deeper down translate it where they can; this is the boundary that catches the
    rest, so that a full disk always ends in exit 73 and says where.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DiskFull):
            return current
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            where = Path(str(current.filename)).parent if current.filename else run_dir
            return DiskFull(f"no space left on the device under {where} ({current.strerror or current})")
        # SQLite says "database or disk is full" (SQLITE_FULL) through SQLAlchemy's wrapper.
        if (
            isinstance(current, sqlite3.Error)
            and getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        ):
            return DiskFull(f"no space left on the device under {run_dir} (the job store: {current})")
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        orig = getattr(current, "orig", None)
        todo.extend(e for e in (current.__cause__, current.__context__, orig) if isinstance(e, BaseException))
    return None


@dataclass(frozen=True)
class _Opening:
    """How the flow opens a run itself (none of it when it attaches to a head start)."""

    provider: str | None
    limits: Limits
    approve: list[str] | None
    resubmit_unknown: bool
    rehearse: bool


async def _render(
    prepared: PreparedRun,
    settings: Settings,
    hooks: RunHooks,
    *,
    opening: _Opening | None = None,
    head: HeadStart | None = None,
) -> RunOutcome:
    """The run itself, once its limits (and, on a server, its run lock) are held: opened here
    (``opening``), or started before the flow run existed (``head``)."""
    run, plan = prepared.run_id, prepared.plan
    bar = await acreate_progress_artifact(
        0.0, key=artifacts.key(plan.script, "render-progress"), description=f"run {run}"
    )
    total, done, updates = len(plan.requests), 0, set[asyncio.Task[Any]]()

    def count_done(event: str, request: PlannedRequest, detail: str) -> None:
        nonlocal done
        if event in {"done", "reused"}:
            done += 1
            update = asyncio.get_running_loop().create_task(
                aupdate_progress_artifact(bar, min(100.0, 100.0 * done / max(total, 1)))
            )
            updates.add(update)
            update.add_done_callback(updates.discard)

    async def choose_and_publish(drafts: Sequence[MasterOutcome], finals: int) -> list[str]:
        chosen = await choose(drafts, finals)
        await artifacts.publish_plan(plan, run, selected=chosen)  # the plan follows the choice
        return chosen

    choose = choice.ui_chooser(plan.script, run, plan.variants, hooks.on_waiting)
    # Every job and every stage a Prefect task run, logged; a person chooses finals in the UI,
    # where there is one.
    flow_hooks = RunHooks(
        on_event=fan_out(count_done, stages.log_event),
        on_stage=stages.log_stage,
        on_spend=stages.log_spend,
        wrap=_as_task,
        choose=choose_and_publish if server_configured() else None,
        run_stage=stages.run_stage,
    )
    if head is not None:
        result = await head.attach(flow_hooks)
    else:
        assert opening is not None
        async with open_prepared(
            prepared,
            settings,
            hooks=hooks.merged(flow_hooks),
            provider=opening.provider,
            limits=opening.limits,
            approve=opening.approve,
            resubmit_unknown=opening.resubmit_unknown,
            rehearse=opening.rehearse,
        ) as session:
            result = await session.run.execute()

    await asyncio.gather(*updates)
    await aupdate_progress_artifact(bar, 100.0, description=f"run {run}: finished")
    await artifacts.publish_plan(plan, run, selected=result.selected)
    await artifacts.publish_result(result, plan)
    stages.run_logger().info(
        "run %s %s: %s charged of %s",
        run,
        "delivered" if result.delivered else "did not deliver everything",
        format_usd(result.spend.charged if result.spend else Decimal(0)),
        format_usd(plan.budget.limit),
    )
    return progress.summary(result)
