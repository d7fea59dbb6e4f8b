"""The scale-out stack on loopback: PostgreSQL databases (the Prefect server's and the shared job
store), a Prefect server on one, moto's S3 (archive and shared clips), process workers on one
work pool — what ``tests/flows/test_scale.py`` and ``scripts/bench_scale.py`` both stand up.

Example::

    with PostgresCluster(pg_dir) as pg, ScaleStack(folder, pg, Limits(3, 2.0, 2)) as stack:
        with SandboxProcess.serve(folder / "sandbox") as sandbox:
            stack.env |= sandbox_env(sandbox, latency_scale=0.02)
            workers = stack.start_workers(["worker-1", "worker-2"])
            stack.cli("deploy", "alpha.yaml", "--pool", stack.pool)
            final = stack.wait_final([stack.trigger("alpha")], timeout=300)

The provider limits are the ones every worker and flow run shares through the Prefect server
(``KLINGFLOW_MAX_IN_FLIGHT``, ``KLINGFLOW_SUBMIT_RATE_PER_S``, ``KLINGFLOW_SUBMIT_BURST``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa

from pipeline.errors import StackError
from pipeline.generation import GenerationSpec
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.stack.children import console_script
from pipeline.stack.postgres import PostgresCluster
from pipeline.stack.prefect_server import PrefectServer, Worker
from pipeline.stack.s3 import MotoServer, S3Endpoint, start_moto
from pipeline.stack.sandbox import SandboxProcess

T = TypeVar("T")


class Limits(NamedTuple):
    """Provider limits shared by every worker: requests in flight, submits/s, submit burst."""

    in_flight: int
    rate: float
    burst: int


def sandbox_env(sandbox: SandboxProcess, *, latency_scale: float) -> dict[str, str]:
    """The environment that points klingflow processes at ``sandbox`` (pollers on its time scale)."""
    return {
        "KLINGFLOW_SANDBOX_URL": sandbox.base_url,
        "KLINGFLOW_SANDBOX_LATENCY_SCALE": f"{latency_scale:g}",
    }


def generous_sandbox(latency_scale: float, render_scale: float, slots: int, *, seed: int) -> SandboxConfig:
    """A sandbox whose own limits are far above the shared ones (only those bind): modelled
    latency, ``slots`` GPU slots, reproducible dice."""
    return SandboxConfig(
        latency_scale=latency_scale,
        render_scale=render_scale,
        slots=slots,
        max_in_flight=10_000,
        submit_rate_per_s=10_000,
        submit_burst=10_000,
        faults=FaultConfig(seed=seed),
    )


def draft_specs(script: Path) -> list[GenerationSpec]:
    """The draft requests of ``script`` as generation specs (what a render cache is warmed with)."""
    from pipeline.planning.plan import build_plan
    from pipeline.script.loader import load_script

    return [r.spec() for r in build_plan(load_script(script).script).requests_for("draft")]


def pin(pid: int, core: int) -> None:
    """Pin process ``pid`` (every thread) to ``core`` with ``taskset``; what it starts afterwards
    inherits the pin (a worker's flow runs, their ffmpeg)."""
    done = subprocess.run(
        ["taskset", "--all-tasks", "--pid", "--cpu-list", str(core), str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # taskset --all-tasks says nothing of a process that is gone: ask the kernel
        pinned = os.sched_getaffinity(pid) == {core}
    except OSError:
        pinned = False
    if done.returncode != 0 or not pinned:
        raise StackError(f"taskset could not pin process {pid} to core {core}", log_tail=done.stderr)


def wait_for(what: str, check: Callable[[], bool], timeout: float, detail: Callable[[], str] = str) -> None:
    """Poll ``check`` until it holds; StackError naming ``what`` (and ``detail()``) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not after {timeout:.0f} s", log_tail=detail())
        time.sleep(0.3)


@dataclass
class ScaleStack:
    """Prefect server, job store and S3 on one PostgreSQL cluster; workers started on demand."""

    folder: Path
    postgres: PostgresCluster
    limits: Limits
    bucket: str = "klingflow-scale"
    pool: str = "scale"
    query_seconds: float = 2.0
    #: For workers and the CLI; start() fills it, callers add to it (the sandbox's URL, …).
    env: dict[str, str] = field(default_factory=dict)
    store_url: str = ""
    server: PrefectServer | None = None
    s3: S3Endpoint | None = None
    workers: list[Worker] = field(default_factory=list)
    _moto: MotoServer | None = None

    def start(self) -> ScaleStack:
        """Create the databases, start the Prefect server and moto; fill ``env``."""
        try:
            prefect_db = self.postgres.create_database(f"prefect_{uuid.uuid4().hex[:8]}")
            self.store_url = self.postgres.create_database(f"klingflow_{uuid.uuid4().hex[:8]}")
            self.server = PrefectServer(self.folder / "prefect", prefect_db.replace("+psycopg", "+asyncpg"))
            self.server.start()
            self._moto = start_moto(bucket=self.bucket)
            self.s3 = self._moto.target
        except BaseException:
            self.stop()
            raise
        self.env = {
            **self.server.client_env(),
            **self.s3.env(),
            "PREFECT_LOGGING_LEVEL": "INFO",  # the worker logs which flow runs it submits
            # ... on its console, whatever a CLI test run in the same process set before.
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",
            "PREFECT_WORKER_QUERY_SECONDS": f"{self.query_seconds:g}",
            "COLUMNS": "250",  # klingflow status prints whole run ids
            "KLINGFLOW_STORE_URL": self.store_url,
            "KLINGFLOW_SHARED_URL": f"s3://{self.bucket}/shared",
            "KLINGFLOW_MAX_IN_FLIGHT": str(self.limits.in_flight),
            "KLINGFLOW_SUBMIT_RATE_PER_S": f"{self.limits.rate:g}",
            "KLINGFLOW_SUBMIT_BURST": str(self.limits.burst),
            **self.env,
        }
        return self

    def stop(self) -> None:
        """Stop the workers, moto and the Prefect server (the cluster is the caller's)."""
        for worker in self.workers:
            worker.stop()
        self.workers = []
        if self._moto is not None:
            self._moto.stop()
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> ScaleStack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """PREFECT_API_URL of the stack's server."""
        if self.server is None:
            raise StackError("the scale stack is not running: start() it first")
        return self.server.api_url

    def fresh_store(self) -> str:
        """A new, empty job store for the workers started from now on; its URL.

        The clip library lives in the job store: a second round of the same scripts on the same
        store would reuse every clip the first one bought, and buy nothing.
        """
        self.store_url = self.postgres.create_database(f"klingflow_{uuid.uuid4().hex[:8]}")
        self.env["KLINGFLOW_STORE_URL"] = self.store_url
        return self.store_url

    # --- workers --------------------------------------------------------------------------------

    def start_workers(
        self,
        names: Sequence[str],
        *,
        limit: int | None = None,
        env: dict[str, str] | None = None,
        cores: Sequence[int] | None = None,
    ) -> list[Worker]:
        """Start ``klingflow worker`` processes on the pool, each in ``folder/NAME`` with its own
        ``KLINGFLOW_RUNS_DIR``; return them (they are stopped with the stack).

        ``cores``: pin worker *i* (and the flow runs it starts) to core ``cores[i]`` with
        ``taskset`` — on one machine, the stand-in for workers on machines of their own.
        """
        started = []
        for i, name in enumerate(names):
            worker = Worker(
                name,
                self.pool,
                {**self.env, **(env or {}), "KLINGFLOW_RUNS_DIR": str(self.folder / name / "runs")},
                self.folder / name,
                limit=limit,
            ).start()
            started.append(worker)
            if cores is not None and worker.proc is not None:
                pin(worker.proc.pid, cores[i % len(cores)])
        self.workers += started
        return started

    def wait_online(self, workers: Iterable[Worker], timeout: float = 120) -> None:
        """Wait until the server lists every one of ``workers`` as online on the pool."""
        wanted = {w.name for w in workers}

        def online() -> bool:
            found = self.api(lambda c: c.read_workers_for_work_pool(self.pool))
            return wanted <= {w.name for w in found if str(w.status).upper().endswith("ONLINE")}

        wait_for(f"workers {sorted(wanted)} online", online, timeout, self.tails)

    def tails(self) -> str:
        """The end of every worker's log, for failure messages."""
        return "\n".join(f"--- {w.name}\n{w.tail()}" for w in self.workers)

    # --- the command line and the API -------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 180, cwd: Path | None = None) -> str:
        """``klingflow ARGS`` with the stack's environment; its stdout. StackError unless it exits 0."""
        done = subprocess.run(
            [console_script("klingflow"), *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or self.folder,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(
                f"klingflow {' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def api(self, make: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """Run ``make(client)`` against the stack's Prefect server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def go() -> T:
            async with get_client() as client:
                return await make(client)

        with temporary_settings({PREFECT_API_URL: self.api_url}):
            return asyncio.run(go())

    def trigger(self, deployment: str, parameters: dict[str, Any] | None = None) -> Any:
        """Start a flow run of ``klingflow-render/DEPLOYMENT`` without waiting; its id."""
        (flow_run_id,) = self.trigger_all({deployment: parameters or {}})
        return flow_run_id

    def trigger_all(self, runs: dict[str, dict[str, Any]]) -> list[Any]:
        """Start one flow run per deployment (name → parameters) at once, without waiting; their ids."""
        from prefect.deployments.flow_runs import arun_deployment

        async def start(client: Any) -> list[Any]:
            started = await asyncio.gather(
                *(
                    arun_deployment(
                        f"klingflow-render/{name}",
                        client=client,
                        parameters=parameters,
                        timeout=0,
                        as_subflow=False,
                    )
                    for name, parameters in runs.items()
                )
            )
            return [flow_run.id for flow_run in started]

        return self.api(start)

    def flow_runs(self, deployment: str | None = None, ids: Sequence[Any] | None = None) -> list[Any]:
        """Flow runs of one deployment, or with these ids (every one when neither is given)."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowRunFilter,
            FlowRunFilterId,
        )

        by_deployment = DeploymentFilter(name=DeploymentFilterName(any_=[deployment])) if deployment else None
        by_id = FlowRunFilter(id=FlowRunFilterId(any_=list(ids))) if ids is not None else None
        return self.api(lambda c: c.read_flow_runs(deployment_filter=by_deployment, flow_run_filter=by_id))

    def wait_final(self, ids: Sequence[Any], timeout: float) -> dict[Any, Any]:
        """Wait until every flow run of ``ids`` is in a final state; return them by id."""
        deadline = time.monotonic() + timeout
        while True:
            runs = {r.id: r for r in self.flow_runs(ids=ids)}
            if len(runs) == len(ids) and all(
                r.state is not None and r.state.is_final() for r in runs.values()
            ):
                return runs
            if time.monotonic() > deadline:
                states = {str(k): (r.state.name if r.state else None) for k, r in runs.items()}
                raise StackError(
                    f"flow runs not final after {timeout:.0f} s: {states}", log_tail=self.tails()
                )
            time.sleep(0.5)

    # --- the shared job store and S3 ---------------------------------------------------------------

    def jobs(self, *run_ids: str) -> list[dict[str, Any]]:
        """The job store's rows of these runs: run_id, key, status, request_id, charged_micro."""
        engine = sa.create_engine(self.store_url)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("jobs"):
                    return []  # no run has opened the store yet
                rows = conn.execute(
                    sa.text(
                        "select run_id, key, status, request_id, charged_micro from jobs where run_id = any(:r)"
                    ),
                    {"r": list(run_ids)},
                )
                return [dict(r._mapping) for r in rows]
        finally:
            engine.dispose()

    def keys(self, prefix: str) -> list[str]:
        """Keys of the stack's bucket under ``prefix``."""
        if self.s3 is None:
            raise StackError("the scale stack is not running: start() it first")
        return self.s3.keys(prefix)
