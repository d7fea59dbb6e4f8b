"""Benchmark: one batch of renders on 1 vs 2 Prefect process workers, under shared provider limits.

The whole scale-out stack is stood up once, as ``tests/flows/test_scale.py`` does: a throwaway
PostgreSQL cluster, a Prefect server on it, moto's S3 (archive and shared clips), the job store on
PostgreSQL, one process work pool. The batch is ``--scripts`` render scripts of ``--variants`` ×
``--segments`` draft jobs each (standard tier, no audio, ``finals: 0``; one 8–15 s shot per
request), deployed with ``klingflow deploy``. Two rounds, each against a fresh sandbox process
(same latency dice) and fresh workers:

1. one worker;
2. two workers (each its own ``KLINGFLOW_RUNS_DIR``), the same deployments with fresh run ids.

In each round every deployment is triggered at once (``arun_deployment(..., timeout=0)``) and
the round ends when every flow run is final. Every worker and flow run shares the provider
limits through the Prefect server's global concurrency limits: ``--in-flight`` requests at once
and ``--rate`` submits/s (burst ``--burst``). The sandbox's own limits are far above them, and
it has ``--gpu-slots`` render slots, so only the shared limits bind.

Reported per round: wall time (trigger → last flow run completed), jobs/s, the lower bound the
shared limits put on the generation (below) and % of it, the limits as the sandbox saw them (peak
in flight, most submits in any 1 s window, 429s), provider calls per job, flow-run start latency
(created → Pending → Running), machine load and CPU (whole machine and this stack's processes,
from /proc), peak RSS of workers and flow runs (VmHWM).

Lower bound on the generation, from the limits and each job's latency at the sandbox ℓᵢ = charged
− accepted (ledger): max of Σℓᵢ / F (each job holds one of F in-flight slots for at least ℓᵢ) and
max over k of [max(0, (N − k − B) / R) + L₍ₖ₊₁₎] (the last k + 1 submits are no earlier than
(N − k − B) / R, and one of them takes at least the (k + 1)-th shortest latency). It leaves out
flow-run start-up, submit round trips, polling, downloads, masters and archive, so the wall time
can never reach it; the generation span (first accept → last charge at the sandbox) is shown
against it too.

Checked (assertions) in every round: every flow run Completed; every job charged exactly once
(ledger), one accepted request per job, the job store's jobs all completed with those requests;
the masters archived; peak in flight ≤ F; no window of submits beyond the token bucket; no 429.

The sandbox renders real (tiny) MP4s with ffmpeg. On 2 cores that would compete with what is
measured, and the second round would find the first round's clips already rendered, so every
clip is rendered once beforehand (a warm-up sandbox) into a cache both rounds share.

Usage: ``.venv/bin/python scripts/bench_scale.py [--scripts 6] [--variants 2] [--segments 5]
[--in-flight 6] [--rate 3] [--burst 3] [--latency-scale 0.05] [--json PATH]`` (~6 min).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BUCKET = "klingflow-bench-scale"
POOL = "bench-scale"
KLINGFLOW = str(Path(sys.executable).with_name("klingflow"))
#: One request per shot: no two of these fit in one 15 s request together.
SHOT_SECONDS = (10, 8, 12, 9, 15, 11, 8, 14, 10, 13)
SANDBOX_SEED = 7
_TICK = os.sysconf("SC_CLK_TCK")


# --- the render scripts -------------------------------------------------------------------------


def write_script(path: Path, index: int, variants: int, segments: int) -> str:
    """Script ``bench-scale-{index}``: one independent narrative, ``segments`` one-shot requests."""
    name = f"bench-scale-{index}"
    shots = [SHOT_SECONDS[(index + i) % len(SHOT_SECONDS)] for i in range(segments)]
    lines = [
        "version: 1",
        f"name: {name}",
        "provider: sandbox",
        f"defaults: {{aspect_ratio: '16:9', audio: false, style: 'studio product shot', seed: {index}}}",
        "narratives:",
        "  - id: spot",
        "    continuity: independent",
        "    shots:",
        *(f"      - {{duration: {d}, action: 'bottle {index}, step {i}'}}" for i, d in enumerate(shots)),
        "variants:",
        *(f"  - {{id: v{v}, overrides: {{seed: {1000 * index + v}}}}}" for v in range(variants)),
        "budget: {limit_usd: 100000, draft_tier: standard, final_tier: pro, finals: 0}",
        f"output: {{loudness_lufs: null, subtitles: false, archive: 's3://{BUCKET}/archive'}}",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return name


def draft_specs(script: Path) -> list[Any]:
    from pipeline.planning.plan import build_plan
    from pipeline.script.loader import load_script

    return [r.spec() for r in build_plan(load_script(script).script).requests_for("draft")]


# --- the sandbox, in its own process --------------------------------------------------------------


def serve_sandbox(config_json: str, data_dir: str) -> None:
    """Child process: a sandbox on a free port (printed first), plus ``GET /bench/*`` (counters)."""
    import uvicorn
    from starlette.responses import JSONResponse

    from pipeline.providers.sandbox.app import create_app
    from pipeline.providers.sandbox.config import SandboxConfig
    from pipeline.providers.sandbox.server import uvicorn_config

    app = create_app(SandboxConfig.model_validate_json(config_json), Path(data_dir))
    state = app.state
    calls: dict[str, int] = {}
    kinds = (
        ("submit", re.compile(r"^POST /v1/models/")),
        ("status", re.compile(r"^GET /v1/requests/[^/]+/status$")),
        ("result", re.compile(r"^GET /v1/requests/[^/]+/result$")),
        ("download", re.compile(r"^GET /cdn/")),
    )

    def jobs() -> list[dict[str, Any]]:
        offset = time.time() - time.monotonic()
        return [
            {
                "request_id": j.request_id,
                "status": j.status,
                "accepted": j.created_at,
                "modelled_done": j.done_at + offset,
                "finished": j.finished_at,
            }
            for j in state.jobs.values()
        ]

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/bench/jobs":
                await JSONResponse(jobs())(scope, receive, send)
                return
            if scope["path"] == "/bench/calls":
                await JSONResponse(calls)(scope, receive, send)
                return
            line = f"{scope['method']} {scope['path']}"
            kind = next((k for k, pattern in kinds if pattern.search(line)), "other")
            calls[kind] = calls.get(kind, 0) + 1
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    print(sock.getsockname()[1], flush=True)
    server = uvicorn.Server(uvicorn_config(counted, HOST, 0))  # type: ignore[arg-type]
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


class Sandbox:
    """A sandbox process of this script, serving clips from the shared render cache."""

    def __init__(self, config: dict[str, Any], data_dir: Path, cache: Path) -> None:
        import httpx

        data_dir.mkdir(parents=True)
        (data_dir / "renders").symlink_to(cache, target_is_directory=True)
        self.proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, __file__, "--serve-sandbox", json.dumps(config), str(data_dir)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not its
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.origin = f"http://{HOST}:{port}"
        self.base_url = f"{self.origin}/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.origin}/bench/calls", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.1)

    def get(self, path: str) -> Any:
        import httpx

        return httpx.get(f"{self.origin}{path}", timeout=30).json()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def timed_sandbox_config(args: argparse.Namespace) -> dict[str, Any]:
    """Provider side: modelled latency, plenty of GPU slots, limits far above the shared ones."""
    return {
        "latency_scale": args.latency_scale,
        "render_scale": args.render_scale,
        "slots": args.gpu_slots,
        "max_in_flight": 10_000,
        "submit_rate_per_s": 10_000,
        "submit_burst": 10_000,
        "faults": {"seed": SANDBOX_SEED},
    }


def warm_cache(args: argparse.Namespace, work: Path, cache: Path, specs: list[Any]) -> None:
    """Have a sandbox render every clip once into ``cache`` (no latency, no limits)."""
    from pipeline.providers.runcomfy import RunComfyProvider
    from pipeline.providers.settings import ProviderSettings

    config = {
        "latency_scale": 0.0,
        "render_scale": args.render_scale,
        "render_workers": 2,
        "slots": 1000,
        "max_in_flight": 10_000,
        "submit_rate_per_s": 10_000,
        "submit_burst": 10_000,
    }

    async def render_all(base_url: str, origin: str) -> None:
        settings = ProviderSettings(base_url=base_url, token_file=Path("/nonexistent"))
        async with RunComfyProvider(settings, download_origins=(origin,)) as provider:
            pending = [(await provider.submit(spec)).request_id for spec in specs]
            while pending:
                await asyncio.sleep(0.5)
                states = await asyncio.gather(*(provider.status(rid) for rid in pending))
                pending = [s.request_id for s in states if not s.state.is_terminal]

    sandbox = Sandbox(config, work / "sandbox-warm", cache)
    try:
        asyncio.run(render_all(sandbox.base_url, sandbox.origin))
        failed = [e for e in sandbox.get("/v1/sandbox/ledger")["entries"] if not e["charged"]]
        assert not failed, f"warm-up renders failed: {failed}"
    finally:
        sandbox.stop()


# --- /proc: load, CPU, memory ---------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in KiB; (0, 0) when gone."""
    rss = hwm = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


@dataclass
class Sampler:
    """Samples the machine and this stack's process trees every ``interval`` seconds.

    CPU of a process is the last value seen minus the first (0 for one born during the round),
    so processes shorter than an interval (ffprobe) are partly missed: the stack's CPU is a
    lower bound. Memory is the kernel's peak (VmHWM) per process, plus the largest sum of the
    workers' trees' VmRSS at one sample.
    """

    roots: dict[int, str]  # root pid -> component (its whole tree counts as that component)
    interval: float = 0.5
    loads: list[float] = field(default_factory=list)
    cpu_first: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    component: dict[int, str] = field(default_factory=dict)
    hwm: dict[int, int] = field(default_factory=dict)
    peak_tree_rss_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self.machine0 = _machine_jiffies()
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.monotonic()
        self.sample(first=True)
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self, first: bool = False) -> None:
        self.loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
                parents[int(entry.name)] = int(fields[1])
                cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICK
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        tree_rss = 0
        for root, name in self.roots.items():
            todo = [root] if root in parents else []
            while todo:
                pid = todo.pop()
                todo += children.get(pid, [])
                kind = name
                if name == "workers" and pid != root:  # a worker's flow runs and their ffmpeg
                    kind = "ffmpeg/ffprobe" if _comm(pid) in {"ffmpeg", "ffprobe"} else "flow runs"
                self.component.setdefault(pid, kind)
                self.cpu_first.setdefault(pid, cpu[pid] if first else 0.0)
                self.cpu_last[pid] = cpu[pid]
                rss, hwm = _rss_kb(pid)
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
                if name == "workers":
                    tree_rss += rss
        self.peak_tree_rss_kb = max(self.peak_tree_rss_kb, tree_rss)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        busy1, total1 = _machine_jiffies()
        busy0, total0 = self.machine0
        me = resource.getrusage(resource.RUSAGE_SELF)
        cpu_by: dict[str, float] = {}
        for pid, kind in self.component.items():
            cpu_by[kind] = cpu_by.get(kind, 0.0) + self.cpu_last[pid] - self.cpu_first[pid]
        cpu_by["bench process (moto S3, API polling)"] = (me.ru_utime + me.ru_stime) - (
            self.self0.ru_utime + self.self0.ru_stime
        )
        wall = time.monotonic() - self.t0
        ncpu = os.cpu_count() or 1

        def peak(kind: str) -> float:
            return max((h for p, h in self.hwm.items() if self.component[p] == kind), default=0) / 1024

        return {
            "sampled_s": wall,
            "load1_max": max(self.loads),
            "load1_mean": statistics.mean(self.loads),
            "machine_busy_cores": ncpu * (busy1 - busy0) / max(total1 - total0, 1),
            "stack_cpu_s": cpu_by,
            "stack_busy_cores": sum(cpu_by.values()) / wall,
            "peak_rss_worker_mb": peak("workers"),
            "peak_rss_flow_run_mb": peak("flow runs"),
            "peak_rss_workers_trees_mb": self.peak_tree_rss_kb / 1024,
        }


# --- the stack ---------------------------------------------------------------------------------------


@dataclass
class Stack:
    """Everything both rounds share."""

    work: Path
    api_url: str
    env: dict[str, str]  # for workers and the CLI (the sandbox URL is added per round)
    store_url: str
    s3: Any
    server_pid: int
    postgres_pid: int
    scripts: dict[str, Path]

    def cli(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [KLINGFLOW, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.work,
        )
        assert done.returncode == 0, (
            f"klingflow {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def api(self, make: Any) -> Any:
        """Run ``make(client)`` (a coroutine) against the stack's Prefect server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def go() -> Any:
            async with get_client() as client:
                return await make(client)

        with temporary_settings({PREFECT_API_URL: self.api_url}):
            return asyncio.run(go())

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            found += [o["Key"] for o in page.get("Contents", [])]
        return found

    def jobs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.store_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text("select run_id, key, status, request_id from jobs where run_id = any(:r)"),
                    {"r": run_ids},
                )
                return [dict(r._mapping) for r in rows]
        finally:
            engine.dispose()


def _wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.5)


# --- one round ---------------------------------------------------------------------------------------


def run_round(
    args: argparse.Namespace, stack: Stack, cache: Path, round_no: int, n_workers: int, jobs_per_script: int
) -> dict[str, Any]:
    from pipeline.stack.prefect_server import Worker

    limit = args.worker_limit or math.ceil(len(stack.scripts) / n_workers)
    names = list(stack.scripts)
    run_ids = {name: f"bench-r{round_no}-{name}" for name in names}
    n_jobs = jobs_per_script * len(names)
    renders_before = len(list(cache.glob("*.mp4")))
    sandbox = Sandbox(timed_sandbox_config(args), stack.work / f"sandbox-r{round_no}", cache)
    workers: list[Worker] = []
    try:
        env = {
            **stack.env,
            "KLINGFLOW_SANDBOX_URL": sandbox.base_url,
            "KLINGFLOW_SANDBOX_LATENCY_SCALE": str(args.latency_scale),
        }
        workers = [
            Worker(
                f"r{round_no}-w{i}",
                POOL,
                {**env, "KLINGFLOW_RUNS_DIR": str(stack.work / f"r{round_no}-w{i}" / "runs")},
                stack.work / f"r{round_no}-w{i}",
                limit=limit,
            ).start()
            for i in range(1, n_workers + 1)
        ]
        wanted = {w.name for w in workers}

        def online() -> bool:
            found = stack.api(lambda c: c.read_workers_for_work_pool(POOL))
            return wanted <= {w.name for w in found if str(w.status).upper().endswith("ONLINE")}

        _wait_for(f"workers {sorted(wanted)} online", online, 120)
        time.sleep(args.query_seconds)  # every worker has polled the (empty) pool at least once
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        roots = {w.proc.pid: "workers" for w in workers if w.proc is not None}
        roots |= {stack.server_pid: "prefect server", stack.postgres_pid: "postgres", sandbox.pid: "sandbox"}
        sampler = Sampler(roots, interval=args.sample_interval)
        sampler.start()

        from prefect.deployments.flow_runs import arun_deployment

        t0 = time.time()

        async def trigger(client: Any) -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        arun_deployment(
                            f"klingflow-render/{name}",
                            client=client,
                            parameters={"run_id": run_ids[name]},
                            timeout=0,
                            as_subflow=False,
                        )
                        for name in names
                    )
                )
            )

        flow_runs = stack.api(trigger)
        triggered_s = time.time() - t0
        ids = [fr.id for fr in flow_runs]
        final = wait_final(stack, ids, args.round_timeout, workers)
        usage = sampler.stop()
        load_after = Path("/proc/loadavg").read_text().split()[:3]

        states = stack.api(lambda c: asyncio.gather(*(c.read_flow_run_states(i) for i in ids)))
        ledger = sandbox.get("/v1/sandbox/ledger")["entries"]
        stats = sandbox.get("/v1/sandbox/stats")
        calls = sandbox.get("/bench/calls")
        sb_jobs = sandbox.get("/bench/jobs")
        store = stack.jobs(list(run_ids.values()))
        masters = {name: stack.keys(f"archive/{name}/{run_ids[name]}/") for name in names}
        logs = {w.name: w.log.read_text(errors="replace") for w in workers}
    finally:
        for w in workers:
            w.stop()
        sandbox.stop()

    # --- checks -------------------------------------------------------------------------------
    not_completed = {
        f"{fr.name} ({i})": f"{fr.state.name}: {fr.state.message}"
        for i, fr in final.items()
        if not fr.state.is_completed()
    }
    assert not not_completed, f"flow runs not Completed: {not_completed}\n{_tails(workers)}"
    assert all(e["charge_count"] <= 1 for e in ledger), [e for e in ledger if e["charge_count"] > 1]
    charged = {e["request_id"]: e for e in ledger if e["charged"]}
    assert len(ledger) == n_jobs, (len(ledger), n_jobs)  # one accepted request per job
    assert len(charged) == n_jobs, (len(charged), n_jobs)
    assert len(store) == n_jobs, (len(store), n_jobs)
    assert all(j["status"] == "completed" for j in store), store
    assert {j["request_id"] for j in store} == set(charged), "job store and ledger disagree"
    master_count = sum(len([k for k in keys if k.endswith("/master.mp4")]) for keys in masters.values())
    assert master_count == len(names) * args.variants, masters
    assert stats["max_in_flight_seen"] <= args.in_flight, stats["max_in_flight_seen"]
    assert stats["rate_limited"] == 0, stats["rate_limited"]
    times = stats["accepted_times"]
    for i in range(len(times)):  # token bucket: burst + rate × span (+1 for network jitter)
        for j in range(i + 1, len(times)):
            assert j - i + 1 <= args.burst + args.rate * (times[j] - times[i]) + 1, (i, j)
    # Both workers may try to submit a flow run; the server lets one, the other aborts.
    taken = {w: submitted_by(text) for w, text in logs.items()}
    ran_on = {str(i): [w for w, runs in taken.items() if str(i) in runs] for i in ids}
    assert all(len(v) == 1 for v in ran_on.values()), ran_on

    # --- numbers ------------------------------------------------------------------------------
    end = max(fr.end_time.timestamp() for fr in final.values())
    wall = end - t0
    bound = lower_bound(ledger, args.in_flight, args.rate, args.burst)
    starts = start_latencies(final, states)
    per_worker = {w.name: sum(1 for v in ran_on.values() if v == [w.name]) for w in workers}
    lag = [j["finished"] - j["modelled_done"] for j in sb_jobs if j["finished"]]
    return {
        "round": round_no,
        "workers": n_workers,
        "worker_limit": limit,
        "flow_runs": len(ids),
        "flow_runs_per_worker": per_worker,
        "jobs": n_jobs,
        "masters_archived": master_count,
        "trigger_s": triggered_s,
        "wall_s": wall,
        "jobs_per_s": n_jobs / wall,
        **bound,
        "first_accept_after_trigger_s": bound["first_accept"] - t0,
        "generation_span_s": bound["last_charge"] - bound["first_accept"],
        "tail_after_last_charge_s": end - bound["last_charge"],
        "max_in_flight_seen": stats["max_in_flight_seen"],
        "max_submits_1s": max_in_window(times, 1.0),
        "rate_limited": stats["rate_limited"],
        "calls": calls,
        "status_calls_per_job": calls.get("status", 0) / n_jobs,
        "sandbox_lag_mean_s": statistics.mean(lag),
        "sandbox_lag_max_s": max(lag),
        "renders_during_round": len(list(cache.glob("*.mp4"))) - renders_before,
        **starts,
        "load_before": load_before,
        "load_after": load_after,
        **usage,
    }


def wait_final(stack: Stack, ids: list[Any], timeout: float, workers: list[Any]) -> dict[Any, Any]:
    """Wait until every flow run is in a final state; return them by id."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    deadline = time.monotonic() + timeout
    while True:
        runs = {r.id: r for r in stack.api(lambda c: c.read_flow_runs(flow_run_filter=flt))}
        if len(runs) == len(ids) and all(r.state is not None and r.state.is_final() for r in runs.values()):
            return runs
        if time.monotonic() > deadline:
            states = {str(k): (r.state.name if r.state else None) for k, r in runs.items()}
            raise TimeoutError(f"flow runs not final after {timeout:.0f} s: {states}\n{_tails(workers)}")
        time.sleep(0.5)


def submitted_by(log: str) -> set[str]:
    """Flow run ids a worker submitted, minus those whose submission the server aborted."""
    tried = set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", log))
    return tried - set(re.findall(r"Aborted submission of flow run '([0-9a-f-]{36})'", log))


def _tails(workers: list[Any]) -> str:
    return "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)


def start_latencies(final: dict[Any, Any], states: list[list[Any]]) -> dict[str, float]:
    """Flow run created → Pending (a worker took it) → Running (its process started the flow)."""
    pending, running = [], []
    for fr, history in zip(final.values(), _ordered(final, states), strict=True):
        at = {s.type.value: s.timestamp.timestamp() for s in reversed(history)}  # first of each type
        created = fr.created.timestamp()
        pending.append(at["PENDING"] - created)
        running.append(at["RUNNING"] - created)
    return {
        "to_pending_mean_s": statistics.mean(pending),
        "to_pending_max_s": max(pending),
        "to_running_mean_s": statistics.mean(running),
        "to_running_max_s": max(running),
    }


def _ordered(final: dict[Any, Any], states: list[list[Any]]) -> list[list[Any]]:
    by_run = {hist[0].state_details.flow_run_id: hist for hist in states if hist}
    return [sorted(by_run[i], key=lambda s: s.timestamp) for i in final]


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((sum(1 for b in times[i:] if b - a < window) for i, a in enumerate(times)), default=0)


def lower_bound(ledger: list[dict[str, Any]], in_flight: int, rate: float, burst: int) -> dict[str, float]:
    """The bound of the module docstring, from the ledger's accepted_at / charged_at."""
    latencies = sorted(e["charged_at"] - e["accepted_at"] for e in ledger)
    n = len(latencies)
    by_in_flight = sum(latencies) / in_flight
    by_rate = max(max(0.0, (n - k - burst) / rate) + latencies[k] for k in range(n))
    return {
        "bound_s": max(by_in_flight, by_rate),
        "bound_in_flight_s": by_in_flight,
        "bound_rate_s": by_rate,
        "bound_rate_simple_s": max(0.0, (n - burst) / rate),
        "latency_mean_s": statistics.mean(latencies),
        "latency_min_s": latencies[0],
        "latency_max_s": latencies[-1],
        "first_accept": min(e["accepted_at"] for e in ledger),
        "last_charge": max(e["charged_at"] for e in ledger),
    }


# --- the whole benchmark -----------------------------------------------------------------------------


def start_stack(args: argparse.Namespace, work: Path, pg_dir: Path, stop: list[Any]) -> Stack:
    """PostgreSQL, Prefect server, moto S3; the scripts deployed. ``stop`` gets what to stop."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    from pipeline.stack.postgres import PostgresCluster, free_port
    from pipeline.stack.prefect_server import PrefectServer

    pg = PostgresCluster(pg_dir, settings={"fsync": "off"})
    stop.append(pg.stop)
    pg.start()
    prefect_db = pg.create_database(f"prefect_{uuid.uuid4().hex[:8]}")
    store_url = pg.create_database(f"klingflow_{uuid.uuid4().hex[:8]}")
    server = PrefectServer(work / "prefect", prefect_db.replace("+psycopg", "+asyncpg"))
    stop.append(server.stop)
    server.start()
    s3_port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: no line per request
    moto = ThreadedMotoServer(ip_address=HOST, port=s3_port, verbose=False)
    moto.start()
    stop.append(moto.stop)
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{s3_port}",
        aws_access_key_id="bench-key",
        aws_secret_access_key="bench-secret-0123456789",  # noqa: S106 - moto's, throwaway
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=BUCKET)
    env = {
        **server.client_env(),
        "PREFECT_LOGGING_LEVEL": "INFO",  # the worker logs which flow runs it submits
        "PREFECT_WORKER_QUERY_SECONDS": str(args.query_seconds),
        "KLINGFLOW_STORE_URL": store_url,
        "KLINGFLOW_SHARED_URL": f"s3://{BUCKET}/shared",
        "KLINGFLOW_S3_ENDPOINT_URL": f"http://{HOST}:{s3_port}",
        "KLINGFLOW_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench-key",
        "AWS_SECRET_ACCESS_KEY": "bench-secret-0123456789",
        "AWS_EC2_METADATA_DISABLED": "true",
        "KLINGFLOW_MAX_IN_FLIGHT": str(args.in_flight),
        "KLINGFLOW_SUBMIT_RATE_PER_S": str(args.rate),
        "KLINGFLOW_SUBMIT_BURST": str(args.burst),
    }
    scripts: dict[str, Path] = {}
    (work / "scripts").mkdir()
    for i in range(args.scripts):
        path = work / "scripts" / f"bench-scale-{i}.yaml"
        scripts[write_script(path, i, args.variants, args.segments)] = path
    assert server.proc is not None
    postmaster = int((pg_dir / "postmaster.pid").read_text().split()[0])
    stack = Stack(work, server.api_url, env, store_url, s3, server.proc.pid, postmaster, scripts)
    stack.cli("deploy", *(str(p) for p in scripts.values()), "--pool", POOL)
    return stack


def main(args: argparse.Namespace) -> dict[str, Any]:
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime before: {uptime_before}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="kf-bench-scale-"))
    # Its own temp dir: as root the server runs as the `postgres` user, which must enter it.
    pg_dir = Path(tempfile.mkdtemp(prefix="kf-bench-scale-pg-"))
    os.environ["PREFECT_HOME"] = str(work / "prefect-bench")  # this process's Prefect client
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    stop: list[Any] = []
    rounds: list[dict[str, Any]] = []
    t_start = time.monotonic()
    failed = True
    try:
        stack = start_stack(args, work, pg_dir, stop)
        specs = [s for p in stack.scripts.values() for s in draft_specs(p)]
        jobs_per_script = len(specs) // len(stack.scripts)
        assert jobs_per_script == args.variants * args.segments, (
            jobs_per_script,
            args.variants,
            args.segments,
        )
        print(
            f"stack up in {time.monotonic() - t_start:.0f} s: {len(stack.scripts)} scripts × "
            f"{jobs_per_script} draft jobs; shared limits {args.in_flight} in flight, {args.rate:g} "
            f"submits/s (burst {args.burst})",
            flush=True,
        )
        cache = work / "render-cache"
        cache.mkdir()
        t = time.monotonic()
        warm_cache(args, work, cache, specs)
        print(
            f"render cache: {len(list(cache.glob('*.mp4')))} clips in {time.monotonic() - t:.0f} s",
            flush=True,
        )
        for round_no, n_workers in enumerate(args.workers, start=1):
            print(f"round {round_no}: {n_workers} worker(s) ...", flush=True)
            result = run_round(args, stack, cache, round_no, n_workers, jobs_per_script)
            rounds.append(result)
            print(
                f"round {round_no}: {result['wall_s']:.1f} s, {result['jobs_per_s']:.2f} jobs/s, "
                f"bound {result['bound_s']:.1f} s",
                flush=True,
            )
        failed = False
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        try:
            for action in reversed(stop):
                try:
                    action()
                except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                    print(f"clean-up: {exc}", file=sys.stderr)
            if failed:  # the logs of workers (and their flow runs) and of the Prefect server
                logs = Path(tempfile.mkdtemp(prefix="kf-bench-scale-logs-"))
                for log in [*work.glob("r*-w*/*.log"), work / "prefect" / "server.log"]:
                    with contextlib.suppress(OSError):
                        shutil.copy(log, logs / log.name)
                print(f"logs: {logs}", file=sys.stderr)
            if args.keep:
                print(f"kept: {work} {pg_dir}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
                shutil.rmtree(pg_dir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "uptime_before": uptime_before,
            "uptime_after": uptime_after,
        },
        "total_s": time.monotonic() - t_start,
        "rounds": rounds,
    }
    report(args, result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _workers(r: dict[str, Any]) -> str:
    return f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    rounds = result["rounds"]

    def row(label: str, fmt: Any) -> str:
        return f"| {label} | " + " | ".join(fmt(r) for r in rounds) + " |"

    header = "| round | " + " | ".join(f"{r['round']}: {_workers(r)}" for r in rounds) + " |"
    table = [
        header,
        "|---|" + "---:|" * len(rounds),
        row("flow runs (per worker)", lambda r: f"{r['flow_runs']} ({', '.join(map(str, r['flow_runs_per_worker'].values()))})"),
        row("worker `--limit`", lambda r: str(r["worker_limit"])),
        row("jobs charged / masters archived", lambda r: f"{r['jobs']} / {r['masters_archived']}"),
        row("wall: trigger → last flow run Completed", lambda r: f"{r['wall_s']:.1f} s"),
        row("jobs/s", lambda r: f"{r['jobs_per_s']:.2f}"),
        row("lower bound (in flight / submit rate)", lambda r: f"{r['bound_s']:.1f} s ({r['bound_in_flight_s']:.1f} / {r['bound_rate_s']:.1f})"),
        row("bound ÷ wall", lambda r: f"{100 * r['bound_s'] / r['wall_s']:.0f} %"),
        row("generation: first accept → last charge (bound ÷ span)", lambda r: f"{r['generation_span_s']:.1f} s ({100 * r['bound_s'] / r['generation_span_s']:.0f} %)"),
        row("trigger → first accept at the sandbox", lambda r: f"{r['first_accept_after_trigger_s']:.1f} s"),
        row("last charge → last flow run Completed (masters, archive)", lambda r: f"{r['tail_after_last_charge_s']:.1f} s"),
        row("flow run created → Pending / → Running (mean; max)", lambda r: f"{r['to_pending_mean_s']:.1f} / {r['to_running_mean_s']:.1f} s; {r['to_running_max_s']:.1f} s"),
        row(f"peak in flight (limit {args.in_flight})", lambda r: str(r["max_in_flight_seen"])),
        row(f"most submits in 1 s (burst {args.burst} + {args.rate:g}/s)", lambda r: str(r["max_submits_1s"])),
        row("429s from the sandbox", lambda r: str(r["rate_limited"])),
        row("status calls / job", lambda r: f"{r['status_calls_per_job']:.1f}"),
        row("sandbox latency ℓ mean (min–max)", lambda r: f"{r['latency_mean_s']:.2f} s ({r['latency_min_s']:.2f}–{r['latency_max_s']:.2f})"),
        row("load avg 1 min (mean / max)", lambda r: f"{r['load1_mean']:.1f} / {r['load1_max']:.1f}"),
        row(f"cores busy, whole machine (of {os.cpu_count()})", lambda r: f"{r['machine_busy_cores']:.2f}"),
        row("cores busy, this stack", lambda r: f"{r['stack_busy_cores']:.2f}"),
        row("peak RSS: worker / one flow run / all worker trees", lambda r: f"{r['peak_rss_worker_mb']:.0f} / {r['peak_rss_flow_run_mb']:.0f} / {r['peak_rss_workers_trees_mb']:.0f} MB"),
    ]  # fmt: skip
    cpu_lines = [
        f"round {r['round']} ({_workers(r)}): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(r["stack_cpu_s"].items(), key=lambda kv: -kv[1]))
        for r in rounds
    ]
    cmd = (
        f".venv/bin/python scripts/bench_scale.py --scripts {args.scripts} --variants {args.variants} "
        f"--segments {args.segments} --in-flight {args.in_flight} --rate {args.rate:g} --burst {args.burst} "
        f"--latency-scale {args.latency_scale:g}"
    )
    m = result["machine"]
    print()
    print(
        f"machine: {m['arch']}, {m['cpus']} CPUs, Python {m['python']}; whole benchmark {result['total_s']:.0f} s"
    )
    print(f"uptime before: {m['uptime_before']}")
    print(f"uptime after:  {m['uptime_after']}")
    print(f"command: {cmd}")
    print()
    print("\n".join(table))
    print()
    print("CPU seconds by component (sampled from /proc every "
          f"{args.sample_interval:g} s; short-lived processes partly missed):")  # fmt: skip
    for line in cpu_lines:
        print("- " + line)
    for r in rounds:
        print(
            f"- round {r['round']}: provider calls {r['calls']}; renders during the round "
            f"{r['renders_during_round']} (0 = every clip came from the cache); sandbox completion "
            f"later than modelled by {1000 * r['sandbox_lag_mean_s']:.0f} ms mean, "
            f"{1000 * r['sandbox_lag_max_s']:.0f} ms max; load before {' '.join(r['load_before'])}, "
            f"after {' '.join(r['load_after'])}"
        )


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: clean up as for Ctrl-C


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-sandbox":
        serve_sandbox(sys.argv[2], sys.argv[3])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scripts", type=int, default=6, help="render scripts (deployments) in the batch")
    parser.add_argument("--variants", type=int, default=2, help="variants per script (one master each)")
    parser.add_argument("--segments", type=int, default=5, help="one-shot segments per variant (≤ 10)")
    parser.add_argument("--in-flight", type=int, default=6, help="shared limit: requests in flight")
    parser.add_argument("--rate", type=float, default=3.0, help="shared limit: submits per second")
    parser.add_argument("--burst", type=int, default=3, help="shared limit: submit burst")
    parser.add_argument("--latency-scale", type=float, default=0.05, help="sandbox latency multiplier")
    parser.add_argument("--render-scale", type=float, default=0.1, help="sandbox picture size multiplier")
    parser.add_argument("--gpu-slots", type=int, default=64, help="sandbox render slots (≥ --in-flight)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="workers in each round (default: 1 then 2)"
    )
    parser.add_argument(
        "--worker-limit",
        type=int,
        default=None,
        help="klingflow worker --limit (default: flow runs ÷ workers, rounded up, so they spread)",
    )
    parser.add_argument("--query-seconds", type=float, default=2.0, help="PREFECT_WORKER_QUERY_SECONDS")
    parser.add_argument("--sample-interval", type=float, default=0.5, help="seconds between /proc samples")
    parser.add_argument("--round-timeout", type=float, default=600.0, help="seconds a round may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    cli = parser.parse_args()
    if not 1 <= cli.segments <= len(SHOT_SECONDS):
        parser.error(f"--segments must be 1..{len(SHOT_SECONDS)}")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main(cli)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
