"""Scale-out end to end: PostgreSQL, a Prefect server on it, two process workers, the sandbox.

One stack for the module (it costs ~40 s to stand up), used by three tests in order:

1. two renders of different scripts at once: both archived; the sandbox never saw more requests
   in flight, nor a faster submit rate, than the limits every worker shares through the server;
   the provider's ledger and the shared job store agree, and nothing was charged twice;
2. a script served by ``klingflow serve`` whose cron fires a minute ahead renders and archives
   its masters by itself, and its schedule stays active when the server process stops;
3. the worker rendering a run is killed (with its flow run's process); ``klingflow cancel
   --keep-requests`` and ``klingflow resume`` hand the run to the other worker, which finishes
   it from the shared store and clips: every job charged exactly once.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
import pytest
import sqlalchemy as sa
from botocore.config import Config

from pipeline.processes import descendants
from pipeline.render.layout import default_run_id
from pipeline.script.loader import load_script
from pipeline.stack.postgres import PostgresCluster, free_port
from pipeline.stack.prefect_server import PrefectServer, Worker, stop_group

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("scale-stack"),  # one stack for the module: its tests stay in one process
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

T = TypeVar("T")

#: The provider limits every worker shares (deliberately below what two runs would take alone).
MAX_IN_FLIGHT, SUBMIT_RATE, SUBMIT_BURST = 3, 2.0, 2
BUCKET = "klingflow-scale"
POOL = "scale-test"
KLINGFLOW = str(Path(sys.executable).with_name("klingflow"))

SCRIPT = """\
version: 1
name: {name}
provider: sandbox
defaults: {{audio: false, style: "test card", seed: {seed}}}
narratives:
{narratives}
variants:
  - id: a
  - id: b
    overrides: {{seed: {seed2}}}
budget: {{limit_usd: 20, draft_tier: standard, final_tier: pro, finals: 0}}
output: {{archive: "s3://{bucket}/archive"}}
{schedule}
"""


def _narrative(nid: str, continuity: str, seconds: list[int]) -> str:
    shots = "\n".join(f'      - {{duration: {s}, action: "{nid} shot {i}"}}' for i, s in enumerate(seconds))
    return f"  - id: {nid}\n    continuity: {continuity}\n    shots:\n{shots}"


def write_script(folder: Path, name: str, narratives: list[str], seed: int, schedule: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        SCRIPT.format(
            name=name,
            narratives="\n".join(narratives),
            seed=seed,
            seed2=seed + 100,
            bucket=BUCKET,
            schedule=schedule,
        )
    )
    return path


def run_id_of(script: Path) -> str:
    loaded = load_script(script)
    return default_run_id(loaded.script.name, loaded.sha256)


@dataclass
class Stack:
    folder: Path
    server: PrefectServer
    workers: list[Worker]
    env: dict[str, str]
    store_url: str
    sandbox_url: str
    s3: Any
    scripts: dict[str, Path]
    scheduled_at: datetime
    serve: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KLINGFLOW, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.folder,
        )
        assert result.returncode == 0, (
            f"klingflow {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result

    def api(self, make: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """Run ``make(client)`` against the stack's Prefect server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def go() -> T:
            async with get_client() as client:
                return await make(client)

        with temporary_settings({PREFECT_API_URL: self.server.api_url}):
            return asyncio.run(go())

    def jobs(self, run_id: str) -> list[dict[str, Any]]:
        engine = sa.create_engine(self.store_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text("select key, status, request_id, charged_micro from jobs where run_id = :r"),
                    {"r": run_id},
                )
                return [dict(r._mapping) for r in rows]
        finally:
            engine.dispose()

    def ledger(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = httpx.get(f"{self.sandbox_url}/sandbox/ledger", timeout=10).json()[
            "entries"
        ]
        return entries

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.sandbox_url}/sandbox/stats", timeout=10).json()
        return stats

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            found += [o["Key"] for o in page.get("Contents", [])]
        return found

    def flow_runs(self, deployment: str | None = None) -> list[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

        flt = DeploymentFilter(name=DeploymentFilterName(any_=[deployment])) if deployment else None
        return self.api(lambda c: c.read_flow_runs(deployment_filter=flt))

    def wait_final(self, flow_run_ids: list[Any], timeout: float) -> dict[Any, Any]:
        """Wait until every flow run is in a final state; return them."""
        deadline = time.monotonic() + timeout
        while True:
            runs = {fid: self.api(lambda c, fid=fid: c.read_flow_run(fid)) for fid in flow_run_ids}
            if all(r.state is not None and r.state.is_final() for r in runs.values()):
                return runs
            if time.monotonic() > deadline:
                states = {str(k): (r.state.name if r.state else None) for k, r in runs.items()}
                pytest.fail(f"flow runs not finished after {timeout:.0f} s: {states}\n{self.tails()}")
            time.sleep(1)

    def tails(self) -> str:
        serve = (self.folder / "serve" / "serve.log").read_text(errors="replace").splitlines()[-30:]
        return "\n".join([*(f"--- {w.name}\n{w.tail()}" for w in self.workers), "--- serve", *serve])

    def check_limits_and_charges(self) -> None:
        stats = self.stats()
        assert stats["max_in_flight_seen"] <= MAX_IN_FLIGHT, stats["max_in_flight_seen"]
        assert stats["rate_limited"] == 0  # the sandbox's own limits are far above the shared ones
        times = stats["accepted_times"]
        # A token bucket of SUBMIT_BURST refilled at SUBMIT_RATE/s: in any window [t_i, t_j] at
        # most burst + rate × (t_j - t_i) submits (plus one for the network's jitter).
        for i in range(len(times)):
            for j in range(i + 1, len(times)):
                assert j - i + 1 <= SUBMIT_BURST + SUBMIT_RATE * (times[j] - times[i]) + 1, (i, j, times)
        ledger = self.ledger()
        assert all(e["charge_count"] <= 1 for e in ledger), [e for e in ledger if e["charge_count"] > 1]


def _wait_for(what: str, check: Callable[[], bool], timeout: float, stack: Stack | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f} s\n{stack.tails() if stack else ''}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def stack(postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from moto.server import ThreadedMotoServer

    folder = tmp_path_factory.mktemp("scale")
    prefect_db = postgres_cluster.create_database(f"prefect_{uuid.uuid4().hex[:8]}")
    store_url = postgres_cluster.create_database(f"klingflow_{uuid.uuid4().hex[:8]}")
    server = PrefectServer(folder / "prefect", prefect_db.replace("+psycopg", "+asyncpg")).start()
    processes: list[subprocess.Popen[bytes]] = []
    workers: list[Worker] = []
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            aws_access_key_id="scale-key",
            aws_secret_access_key="scale-secret-0123456789",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket=BUCKET)
        sandbox_port = free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}/v1"
        env = {
            **server.client_env(),
            "PREFECT_LOGGING_LEVEL": "INFO",
            "COLUMNS": "250",  # klingflow status prints whole run ids
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "KLINGFLOW_STORE_URL": store_url,
            "KLINGFLOW_SHARED_URL": f"s3://{BUCKET}/shared",
            "KLINGFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "KLINGFLOW_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "scale-key",
            "AWS_SECRET_ACCESS_KEY": "scale-secret-0123456789",
            "AWS_EC2_METADATA_DISABLED": "true",
            "KLINGFLOW_SANDBOX_URL": sandbox_url,
            "KLINGFLOW_SANDBOX_LATENCY_SCALE": "0.02",
            "KLINGFLOW_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            "KLINGFLOW_SUBMIT_RATE_PER_S": str(SUBMIT_RATE),
            "KLINGFLOW_SUBMIT_BURST": str(SUBMIT_BURST),
        }
        sandbox = subprocess.Popen(
            [KLINGFLOW, "sandbox", "serve", "--port", str(sandbox_port), "--latency-scale", "0.02",
             "--render-scale", "0.1", "--data-dir", str(folder / "sandbox")],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        processes.append(sandbox)
        scripts = {
            "alpha": write_script(folder, "alpha", [_narrative("n1", "independent", [8]), _narrative("n2", "independent", [6])], 1),
            "beta": write_script(folder, "beta", [_narrative("n1", "chain", [10, 10])], 2),
            "gamma": write_script(folder, "gamma", [_narrative("n1", "independent", [10, 10, 10, 10, 10])], 3),
        }  # fmt: skip
        workers = [
            Worker(
                name, POOL, {**env, "KLINGFLOW_RUNS_DIR": str(folder / name / "runs")}, folder / name
            ).start()
            for name in ("worker-1", "worker-2")
        ]
        _wait_for("sandbox up", lambda: _answers(f"{sandbox_url}/sandbox/stats"), 60)
        # A schedule a minute ahead: the first whole minute at least 30 s from now (the server's
        # scheduler only creates runs for times still to come).
        fire = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
        schedule = f'schedule: {{cron: "{fire.minute} {fire.hour} * * *", timezone: "UTC"}}'
        scripts["delta"] = write_script(folder, "delta", [_narrative("n1", "independent", [5])], 4, schedule)
        st = Stack(folder, server, workers, env, store_url, sandbox_url, s3, scripts, fire)
        st.cli("deploy", *(str(p) for n, p in scripts.items() if n != "delta"), "--pool", POOL)
        # The scheduled script is served (klingflow serve: one process, no work pool).
        serve_dir = folder / "serve"
        serve_dir.mkdir()
        with (serve_dir / "serve.log").open("wb") as log:
            st.serve = subprocess.Popen(
                [KLINGFLOW, "serve", str(scripts["delta"])],
                env={**os.environ, **env, "KLINGFLOW_RUNS_DIR": str(serve_dir / "runs")},
                cwd=serve_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        processes.append(st.serve)
        yield st
    finally:
        for w in workers:
            w.stop()
        for p in processes:
            stop_group(p)
        server.stop()
        moto.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _trigger(stack: Stack, name: str) -> Any:
    from prefect.deployments.flow_runs import arun_deployment

    return stack.api(
        lambda c: arun_deployment(f"klingflow-render/{name}", client=c, timeout=0, as_subflow=False)
    ).id


def _assert_delivered(stack: Stack, name: str, run_id: str, masters: int) -> None:
    jobs = stack.jobs(run_id)
    assert jobs and all(j["status"] == "completed" for j in jobs), jobs
    # Every job's request charged exactly once by the provider, and recorded at that price.
    charged = {e["request_id"]: e for e in stack.ledger() if e["charged"]}
    for job in jobs:
        entry = charged[job["request_id"]]
        assert entry["charge_count"] == 1
        assert job["charged_micro"] == round(float(entry["cost_usd"]) * 1_000_000)
    fingerprints = [
        e["fingerprint"] for e in stack.ledger() if e["request_id"] in {j["request_id"] for j in jobs}
    ]
    assert len(fingerprints) == len(jobs)
    archived = stack.keys(f"archive/{name}/{run_id}/")
    assert len([k for k in archived if k.endswith("/master.mp4")]) == masters, archived
    assert len([k for k in archived if k.endswith("/manifest.json")]) == masters, archived
    # Every clip went to shared storage, where any worker can stitch from.
    assert len([k for k in stack.keys(f"shared/runs/{run_id}/clips/") if k.endswith(".mp4")]) == len(jobs)


def test_two_renders_at_once_share_the_provider_limits(stack: Stack) -> None:
    ids = [_trigger(stack, "alpha"), _trigger(stack, "beta")]
    runs = stack.wait_final(ids, timeout=300)
    assert all(r.state.is_completed() for r in runs.values()), {str(k): r.state for k, r in runs.items()}
    _assert_delivered(stack, "alpha", run_id_of(stack.scripts["alpha"]), masters=4)
    _assert_delivered(stack, "beta", run_id_of(stack.scripts["beta"]), masters=2)
    stack.check_limits_and_charges()
    status = stack.cli("status").stdout
    assert run_id_of(stack.scripts["alpha"]) in status and run_id_of(stack.scripts["beta"]) in status


def test_scheduled_deployment_fires_on_its_cron_and_archives_a_master(stack: Stack) -> None:
    def fired() -> list[Any]:
        return [
            r
            for r in stack.flow_runs("delta")
            if r.auto_scheduled and r.expected_start_time == stack.scheduled_at
        ]

    # Created by the server's scheduler ahead of time, started by a worker at the cron minute.
    _wait_for("the scheduler created the run", lambda: bool(fired()), 120, stack)
    (run,) = fired()
    final = stack.wait_final([run.id], timeout=240)[run.id]
    assert final.state.is_completed(), final.state
    # Started at the cron minute, not before (a runner may hand it over a few ms early).
    assert final.start_time >= stack.scheduled_at - timedelta(seconds=2)
    run_id = f"{run_id_of(stack.scripts['delta'])}-{stack.scheduled_at:%Y%m%dT%H%MZ}"
    assert f"run:{run_id}" in final.tags
    _assert_delivered(stack, "delta", run_id, masters=2)
    stack.check_limits_and_charges()
    # klingflow serve stops without pausing the schedule: the next firing still comes.
    assert stack.serve is not None
    stop_group(stack.serve)
    deployment = stack.api(lambda c: c.read_deployment_by_name("klingflow-render/delta"))
    assert not deployment.paused and all(s.active for s in deployment.schedules)


def _kill_between_submits(stack: Stack, victim: Worker, run_id: str) -> None:
    """Kill the victim's worker and flow run, but not while a paid submit is on the wire.

    A request whose answer is lost is "unknown" and rightly never bought again without
    --resubmit-unknown; that case has its own tests. The victim is frozen (SIGSTOP) while the
    store is read, so what it shows cannot change before the kill.
    """
    assert victim.proc is not None
    for _ in range(100):
        pids = [victim.proc.pid, *descendants(victim.proc.pid)]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        if not any(j["status"] == "submitting" for j in stack.jobs(run_id)):
            victim.kill()
            return
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail("the victim was always in the middle of a submit")


def test_killed_worker_run_is_resumed_by_the_other_and_pays_each_job_once(stack: Stack) -> None:
    run_id = run_id_of(stack.scripts["gamma"])
    flow_run_id = _trigger(stack, "gamma")
    total = 10  # 50 s in 5 independent segments × 2 variants

    def mid_run() -> bool:
        jobs = stack.jobs(run_id)
        done = sum(j["status"] == "completed" for j in jobs)
        return 2 <= done < total and len(jobs) == total

    _wait_for("gamma half done", mid_run, 240, stack)
    (victim,) = [w for w in stack.workers if re.search(str(flow_run_id), w.log.read_text(errors="replace"))]
    _kill_between_submits(stack, victim, run_id)
    # Its machine is gone with its disk: the survivor can only find the clips in shared storage.
    shutil.rmtree(stack.folder / victim.name / "runs")
    survivor = next(w for w in stack.workers if w is not victim)
    before = {j["key"]: j["status"] for j in stack.jobs(run_id)}
    assert any(s != "completed" for s in before.values()), before

    out = stack.cli("cancel", run_id, "--keep-requests", "--wait", "3").stdout
    assert "Cancelled" in out, out
    stack.cli("resume", run_id)
    _wait_for(
        "the resumed run finished",
        lambda: any(
            r.state is not None and r.state.is_final() and r.id != flow_run_id
            for r in stack.flow_runs("gamma")
        ),
        300,
        stack,
    )
    resumed = [r for r in stack.flow_runs("gamma") if r.id != flow_run_id]
    assert len(resumed) == 1 and resumed[0].state.is_completed(), resumed[0].state
    assert str(resumed[0].id) in survivor.log.read_text(errors="replace")
    _assert_delivered(stack, "gamma", run_id, masters=2)
    stack.check_limits_and_charges()
    # The survivor stitched every clip from its own disk, the victim's fetched from shared storage
    # (sha256 checked), not downloaded again: the provider's result URLs may be long expired.
    assert len(list((stack.folder / survivor.name / "runs" / run_id / "clips").rglob("*.mp4"))) == total
    # Clips completed before the kill were downloaded from the provider once, by the victim.
    downloads = stack.stats()["downloads"]
    done_before = [j for j in stack.jobs(run_id) if before[j["key"]] == "completed"]
    assert done_before and all(downloads[j["request_id"]] == 1 for j in done_before), downloads
