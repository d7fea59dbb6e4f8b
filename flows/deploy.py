"""Deployments of the render flow: one per render script, with the script's own schedule.

A deployment runs ``flows.render:render`` by *module path*: every worker has klingflow installed
(the Docker image, or ``scripts/setup.sh``), so no code is pulled from storage. Its one fixed
parameter is the script — an absolute local path (for workers sharing this machine's disk) or an
``s3://`` URI (for workers anywhere). A script's ``schedule`` (cron + IANA time zone) becomes the
deployment's schedule; a script without one is deployed to be started on demand.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.limits import server_configured
from flows.render import render
from pipeline.errors import ConfigError, StackError
from pipeline.script.loader import LoadedScript, load_script

T = TypeVar("T")

#: The work pool deployments go to and ``klingflow worker`` serves, unless told otherwise.
DEFAULT_POOL = "klingflow"
#: Tag of every klingflow deployment (and so of its flow runs).
TAG = "klingflow"


def needs_server(what: str) -> None:
    """ConfigError unless PREFECT_API_URL (or the active profile) names a Prefect server."""
    if not server_configured():
        raise ConfigError(
            f"{what} needs a Prefect server: start one (prefect server start) and set "
            "PREFECT_API_URL, e.g. http://127.0.0.1:4200/api (see README, 'Running at scale')"
        )


def on_server(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` (which talks to the Prefect server); an unreachable server is a StackError."""
    import httpx

    try:
        return asyncio.run(work)
    except httpx.HTTPError as exc:
        raise StackError(
            f"the Prefect server at {os.environ.get('PREFECT_API_URL') or 'the profile URL'} "
            f"did not answer: {type(exc).__name__}: {exc}"
        ) from exc


def script_reference(script: str) -> str:
    """What a deployment passes as ``script``: an s3:// URI as is, a local path made absolute."""
    if script.lower().startswith("s3://"):
        return script
    return str(Path(script).expanduser().resolve())


@dataclass(frozen=True)
class ScriptDeployment:
    """A script and the deployment made of it."""

    loaded: LoadedScript
    deployment: RunnerDeployment

    @property
    def schedule(self) -> str:
        """``cron (time zone)`` or ``on demand``."""
        s = self.loaded.script.schedule
        return f"{s.cron} ({s.timezone})" if s else "on demand"


def deployment_of(script: str, *, provider: str | None = None) -> ScriptDeployment:
    """The deployment of ``script`` (validated first: a broken script is never deployed)."""
    ref = script_reference(script)
    loaded = load_script(ref)
    parameters: dict[str, Any] = {"script": ref}
    if provider:
        parameters["provider"] = provider
    schedule = loaded.script.schedule
    deployment = RunnerDeployment.from_flow(
        render,
        name=loaded.script.name,
        schedule=Cron(schedule.cron, timezone=schedule.timezone) if schedule else None,
        parameters=parameters,
        description=f"Renders {ref} (klingflow render script {loaded.script.name!r}).",
        tags=[TAG, f"script:{loaded.script.name}"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return ScriptDeployment(loaded, deployment)


async def ensure_pool(name: str) -> None:
    """Create the process work pool ``name`` unless it exists."""
    async with get_client() as client:
        try:
            await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))


async def deploy(
    scripts: list[str], *, pool: str = DEFAULT_POOL, provider: str | None = None
) -> list[tuple[ScriptDeployment, str]]:
    """Register (or update) a deployment per script on ``pool``; return them with their ids."""
    made = [deployment_of(s, provider=provider) for s in scripts]  # bad scripts fail first
    needs_server("klingflow deploy")
    await ensure_pool(pool)
    return [(d, str(await d.deployment.aapply(work_pool_name=pool))) for d in made]


def absolute_runs_dir(runs_dir: Path) -> None:
    """Pin KLINGFLOW_RUNS_DIR to ``runs_dir`` made absolute, for the flow runs this process starts.

    Workers start each flow run in a temporary directory that is removed afterwards; a relative
    runs directory would put the run's clips and masters there.
    """
    os.environ["KLINGFLOW_RUNS_DIR"] = str(runs_dir.expanduser().resolve())


async def serve(
    scripts: list[str], *, runs_dir: Path, provider: str | None = None, limit: int | None = None
) -> None:
    """Serve the scripts' deployments from this process until stopped (schedules stay active)."""
    from prefect.flows import aserve

    made = [deployment_of(s, provider=provider) for s in scripts]
    needs_server("klingflow serve")
    absolute_runs_dir(runs_dir)
    await aserve(*[d.deployment for d in made], pause_on_shutdown=False, limit=limit)


async def work(
    pool: str = DEFAULT_POOL, *, runs_dir: Path, limit: int | None = None, name: str | None = None
) -> None:
    """Run a process worker on ``pool`` (created if missing) until stopped."""
    from prefect.workers.process import ProcessWorker

    needs_server("klingflow worker")
    absolute_runs_dir(runs_dir)
    async with ProcessWorker(work_pool_name=pool, limit=limit, name=name) as worker:
        await worker.start()
