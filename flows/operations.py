"""Runs as the Prefect server sees them: list, start, cancel and resume them across workers.

Every render flow run is tagged ``run:{run id}`` by the flow itself, so a klingflow run id (what
``klingflow status`` prints and the job store keys on) finds its flow runs on any worker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Cancelled, Cancelling

from pipeline.errors import ConfigError

FLOW_NAME = "klingflow-render"
RUN_TAG = "run:"
#: States in which a flow run still holds (or may still hold) a worker.
ACTIVE = frozenset(
    {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING}
)


def run_tag(run_id: str) -> str:
    """The tag the render flow puts on its flow runs."""
    return f"{RUN_TAG}{run_id}"


def run_id_of(flow_run: FlowRun) -> str | None:
    """The klingflow run id of a flow run (None before the flow has started)."""
    for tag in flow_run.tags:
        if tag.startswith(RUN_TAG):
            return tag[len(RUN_TAG) :]
    explicit = flow_run.parameters.get("run_id")
    return str(explicit) if explicit else None


@dataclass(frozen=True)
class FlowRunView:
    """One render flow run, for ``klingflow status``."""

    name: str
    run_id: str | None
    state: str
    deployment: str | None
    started: datetime | None
    worker: str | None


async def flow_runs(run_id: str | None = None, *, limit: int = 50) -> list[FlowRun]:
    """Render flow runs on the server, newest first; of one run when ``run_id`` is given."""
    run_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[run_tag(run_id)])) if run_id else None
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=run_filter,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )


async def views(limit: int = 50) -> list[FlowRunView]:
    """The newest render flow runs with their deployment names."""
    runs = await flow_runs(limit=limit)
    names: dict[Any, str] = {}
    async with get_client() as client:
        for deployment_id in {r.deployment_id for r in runs if r.deployment_id}:
            names[deployment_id] = (await client.read_deployment(deployment_id)).name
    return [
        FlowRunView(
            name=r.name,
            run_id=run_id_of(r),
            state=(r.state.name or "?") if r.state else "?",
            deployment=names.get(r.deployment_id),
            started=r.start_time,
            worker=r.work_pool_name,
        )
        for r in runs
    ]


async def cancel(run_id: str, *, wait_s: float = 15.0) -> list[tuple[str, str]]:
    """Cancel the active flow runs of ``run_id``; return (flow run name, final state name).

    The run's worker is asked first (Cancelling: it stops the flow run's process). A worker
    that does not answer within ``wait_s`` — it died, or its machine did — leaves the flow run
    stuck; it is then marked Cancelled by force, so that the run can be resumed elsewhere.
    """
    active = [r for r in await flow_runs(run_id) if r.state_type in ACTIVE]
    done: list[tuple[str, str]] = []
    async with get_client() as client:
        for r in active:
            if r.state_type in {StateType.SCHEDULED, StateType.PAUSED}:
                await client.set_flow_run_state(
                    r.id, Cancelled(message="cancelled by klingflow cancel"), force=True
                )
                done.append((r.name, "Cancelled"))
                continue
            await client.set_flow_run_state(
                r.id, Cancelling(message="cancelled by klingflow cancel"), force=True
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            state = await client.read_flow_run(r.id)
            while state.state_type == StateType.CANCELLING and loop.time() < deadline:
                await asyncio.sleep(1)
                state = await client.read_flow_run(r.id)
            if state.state_type == StateType.CANCELLING:
                await client.set_flow_run_state(
                    r.id,
                    Cancelled(message="its worker did not answer: marked cancelled by klingflow cancel"),
                    force=True,
                )
                done.append((r.name, "Cancelled (worker did not answer)"))
            else:
                done.append((r.name, (state.state.name or "?") if state.state else "?"))
    return done


async def resume(run_id: str) -> FlowRun:
    """Start a new flow run of the deployment that ran ``run_id``, with the same parameters.

    Any worker of the pool takes it; the job store makes it reuse completed clips and follow
    submitted requests, so nothing is bought twice.
    """
    runs = await flow_runs(run_id)
    if any(r.state_type in ACTIVE for r in runs):
        raise ConfigError(f"run {run_id} still has an active flow run: klingflow cancel {run_id} first")
    source = next((r for r in runs if r.deployment_id), None)
    if source is None or source.deployment_id is None:
        raise ConfigError(
            f"no deployed flow run of run {run_id} on this Prefect server: resume a local run with klingflow run"
        )
    parameters = {**source.parameters, "run_id": run_id}
    return await arun_deployment(source.deployment_id, parameters=parameters, timeout=0, as_subflow=False)
