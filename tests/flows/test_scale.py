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

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.processes import descendants
from pipeline.render.layout import default_run_id
from pipeline.script.loader import load_script
from pipeline.stack.children import console_script, stop_group
from pipeline.stack.postgres import PostgresCluster
from pipeline.stack.prefect_server import Worker
from pipeline.stack.sandbox import SandboxProcess
from pipeline.stack.scale import Limits, ScaleStack, sandbox_env, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("scale-stack"),  # one stack for the module: its tests stay in one process
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

#: The provider limits every worker shares (deliberately below what two runs would take alone).
LIMITS = Limits(in_flight=3, rate=2.0, burst=2)
BUCKET = "klingflow-scale"
LATENCY_SCALE = 0.02

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
    """The module's scale stack, its sandbox process, the scripts and ``klingflow serve``."""

    scale: ScaleStack
    sandbox: SandboxProcess
    workers: list[Worker]
    scripts: dict[str, Path]
    scheduled_at: datetime
    serve: subprocess.Popen[bytes] | None = None

    @property
    def folder(self) -> Path:
        return self.scale.folder

    def cli(self, *args: str) -> str:
        return self.scale.cli(*args, timeout=120)

    def jobs(self, run_id: str) -> list[dict[str, Any]]:
        return self.scale.jobs(run_id)

    def flow_runs(self, deployment: str) -> list[Any]:
        return self.scale.flow_runs(deployment)

    def wait_final(self, ids: list[Any], timeout: float) -> dict[Any, Any]:
        return self.scale.wait_final(ids, timeout)

    def tails(self) -> str:
        serve = (self.folder / "serve" / "serve.log").read_text(errors="replace").splitlines()[-30:]
        return "\n".join([self.scale.tails(), "--- serve", *serve])

    def check_limits_and_charges(self) -> None:
        stats = self.sandbox.stats()
        assert stats["max_in_flight_seen"] <= LIMITS.in_flight, stats["max_in_flight_seen"]
        assert stats["rate_limited"] == 0  # the sandbox's own limits are far above the shared ones
        times = stats["accepted_times"]
        # A token bucket of burst B refilled at R/s: in any window [t_i, t_j] at most
        # B + R × (t_j - t_i) submits (plus one for the network's jitter).
        for i in range(len(times)):
            for j in range(i + 1, len(times)):
                assert j - i + 1 <= LIMITS.burst + LIMITS.rate * (times[j] - times[i]) + 1, (i, j, times)
        ledger = self.sandbox.ledger()
        assert all(e["charge_count"] <= 1 for e in ledger), [e for e in ledger if e["charge_count"] > 1]


def _wait_for(what: str, check: Callable[[], bool], timeout: float, stack: Stack) -> None:
    wait_for(what, check, timeout, stack.tails)


@pytest.fixture(scope="module")
def stack(postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("scale")
    serve: subprocess.Popen[bytes] | None = None
    with (
        ScaleStack(folder, postgres_cluster, LIMITS, bucket=BUCKET, pool="scale-test") as scale,
        SandboxProcess.serve(folder / "sandbox", latency_scale=LATENCY_SCALE, render_scale=0.1) as sandbox,
    ):
        scale.env |= sandbox_env(sandbox, latency_scale=LATENCY_SCALE)
        try:
            scripts = {
                "alpha": write_script(folder, "alpha", [_narrative("n1", "independent", [8]), _narrative("n2", "independent", [6])], 1),
                "beta": write_script(folder, "beta", [_narrative("n1", "chain", [10, 10])], 2),
                "gamma": write_script(folder, "gamma", [_narrative("n1", "independent", [10, 10, 10, 10, 10])], 3),
            }  # fmt: skip
            workers = scale.start_workers(["worker-1", "worker-2"])
            # A schedule a minute ahead: the first whole minute at least 30 s from now (the server's
            # scheduler only creates runs for times still to come).
            fire = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
            schedule = f'schedule: {{cron: "{fire.minute} {fire.hour} * * *", timezone: "UTC"}}'
            scripts["delta"] = write_script(
                folder, "delta", [_narrative("n1", "independent", [5])], 4, schedule
            )
            st = Stack(scale, sandbox, workers, scripts, fire)
            st.cli("deploy", *(str(p) for n, p in scripts.items() if n != "delta"), "--pool", scale.pool)
            # The scheduled script is served (klingflow serve: one process, no work pool).
            serve_dir = folder / "serve"
            serve_dir.mkdir()
            with (serve_dir / "serve.log").open("wb") as log:
                serve = st.serve = subprocess.Popen(
                    [console_script("klingflow"), "serve", str(scripts["delta"])],
                    env={**os.environ, **scale.env, "KLINGFLOW_RUNS_DIR": str(serve_dir / "runs")},
                    cwd=serve_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            yield st
        finally:
            if serve is not None:
                stop_group(serve)


def _trigger(stack: Stack, name: str) -> Any:
    return stack.scale.trigger(name)


def _assert_delivered(stack: Stack, name: str, run_id: str, masters: int) -> None:
    jobs = stack.jobs(run_id)
    assert jobs and all(j["status"] == "completed" for j in jobs), jobs
    # Every job's request charged exactly once by the provider, and recorded at that price.
    ledger = stack.sandbox.ledger()
    charged = {e["request_id"]: e for e in ledger if e["charged"]}
    for job in jobs:
        entry = charged[job["request_id"]]
        assert entry["charge_count"] == 1
        assert job["charged_micro"] == round(float(entry["cost_usd"]) * 1_000_000)
    fingerprints = [e["fingerprint"] for e in ledger if e["request_id"] in {j["request_id"] for j in jobs}]
    assert len(fingerprints) == len(jobs)
    archived = stack.scale.keys(f"archive/{name}/{run_id}/")
    assert len([k for k in archived if k.endswith("/master.mp4")]) == masters, archived
    assert len([k for k in archived if k.endswith("/manifest.json")]) == masters, archived
    # Every clip went to shared storage, where any worker can stitch from.
    clips = stack.scale.keys(f"shared/runs/{run_id}/clips/")
    assert len([k for k in clips if k.endswith(".mp4")]) == len(jobs)


def test_two_renders_at_once_share_the_provider_limits(stack: Stack) -> None:
    ids = [_trigger(stack, "alpha"), _trigger(stack, "beta")]
    runs = stack.wait_final(ids, timeout=300)
    assert all(r.state.is_completed() for r in runs.values()), {str(k): r.state for k, r in runs.items()}
    _assert_delivered(stack, "alpha", run_id_of(stack.scripts["alpha"]), masters=4)
    _assert_delivered(stack, "beta", run_id_of(stack.scripts["beta"]), masters=2)
    stack.check_limits_and_charges()
    status = stack.cli("status")
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
    deployment = stack.scale.api(lambda c: c.read_deployment_by_name("klingflow-render/delta"))
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
    # The worker running it is the one whose disk holds the run (each worker has its own runs
    # directory); its log may not show the flow run id yet on a loaded machine.
    (victim,) = [w for w in stack.workers if (stack.folder / w.name / "runs" / run_id).is_dir()]
    _kill_between_submits(stack, victim, run_id)
    # Its machine is gone with its disk: the survivor can only find the clips in shared storage.
    shutil.rmtree(stack.folder / victim.name / "runs")
    survivor = next(w for w in stack.workers if w is not victim)
    before = {j["key"]: j["status"] for j in stack.jobs(run_id)}
    assert any(s != "completed" for s in before.values()), before

    out = stack.cli("cancel", run_id, "--keep-requests", "--wait", "3")
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
    downloads = stack.sandbox.stats()["downloads"]
    done_before = [j for j in stack.jobs(run_id) if before[j["key"]] == "completed"]
    assert done_before
    again = {j["request_id"]: downloads.get(j["request_id"]) for j in done_before}
    assert all(count == 1 for count in again.values()), again
