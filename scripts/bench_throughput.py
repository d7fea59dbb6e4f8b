"""Benchmark: throughput of a generation pass under provider limits, against its lower bound.

At least 200 draft jobs (``--variants`` × 10 independent segments of 6–15 s) run against the
sandbox and its latency model (queue wait + render time, ±30 % jitter), under a client-side
in-flight limit and submit rate. Reported, per phase:

- **makespan** of the generation pass (wall seconds of ``Engine.run_pass``);
- the **lower bound** that the limits and the sandbox's own latencies put on it (derived below)
  and **efficiency** = bound / makespan;
- orchestration **CPU time per job** (user + sys of the orchestrating process; the sandbox runs in
  a separate process, so none of its work is counted); ffprobe checks of downloads (child
  processes) and Prefect's ephemeral API server (a subprocess) are shown separately;
- **status calls per job** (mean, max) and **peak RSS** of the orchestrating process.

Phases, each in a fresh process against a fresh sandbox process (same seed, same latency draws):

1. ``engine``: ``open_run(...)`` + ``session.engine.run_pass(plan.requests_for("draft"))``;
2. ``flow``: the Prefect flow ``flows.render.render`` in ephemeral mode (each job a task run,
   progress artifacts, local limits), with lighter draft masters (tiny pictures, no loudness pass,
   no subtitles, no finals); its draft pass is timed by wrapping ``Engine.run_pass``, and the
   whole flow (Prefect start-up, plan artifact, masters, archive, report) is reported beside it;
3. ``baseline``: the RunComfy CLI's way: one job at a time, status polled every 2 s (× the
   latency scale), then result and download with the same verification; run on an evenly spread
   subset (``--baseline-jobs``) and extrapolated linearly to all jobs.

Lower bound. Let job *i* be accepted by the sandbox at *a_i* and completed there at *f_i*, so its
latency at the sandbox is ℓ_i = f_i − a_i (queue wait + render, as the sandbox drew them). With
F requests in flight, a submit rate R (token bucket, burst B) and N jobs:

- in flight: each job holds one of the F slots at least over [a_i, f_i], so makespan ≥ Σℓ_i / F;
- submit rate: the j-th submit cannot happen before (j − B)/R; the last k + 1 jobs are submitted
  no earlier than (N − k − B)/R and one of them takes at least the (k + 1)-th shortest latency
  L₍ₖ₊₁₎, so makespan ≥ max over k of [max(0, (N − k − B)/R) + L₍ₖ₊₁₎] (k = N − 1 gives the
  longest single latency);
- sandbox GPU slots (S): makespan ≥ Σ(render time) / S (with S ≥ F, the default, never binding).

bound = the largest of these. It ignores submit round trips, polling delay and downloads, so 100 %
is unreachable; what is left over is what orchestration and polling cost.

The sandbox renders real (tiny) MP4s with ffmpeg; on 2 cores that would compete with what is
measured, so every clip is rendered once beforehand into a cache (``--cache-dir``, reused by
later runs) and the timed sandboxes serve cached files at their modelled times.

Usage: ``.venv/bin/python scripts/bench_throughput.py [--variants 20] [--in-flight 8] [--rate 4]
[--burst 4] [--scale 0.02] [--baseline-jobs 20] [--skip-flow]`` (~5 min; the first run also
renders the cache, ~1–2 min more).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHOTS = (10, 8, 12, 6, 15, 10, 9, 14, 7, 11)  # one request each (no two fit in 15 s together)
CLI_INTERVAL_S = 2.0
RUN_ID = "bench-throughput"
HOST = "127.0.0.1"


# --- the render script ------------------------------------------------------------------------


def write_script(path: Path, variants: int, archive: Path) -> None:
    """``variants`` × one independent narrative of 10 segments; drafts only, lighter masters."""
    lines = [
        "version: 1",
        "name: bench-throughput",
        "provider: sandbox",
        "defaults: {aspect_ratio: '16:9', audio: false, style: 'clean studio product shot'}",
        "narratives:",
        "  - id: spot",
        "    continuity: independent",
        "    shots:",
    ]
    lines += [
        f"      - {{duration: {d}, action: 'the bottle, step {i} of the story'}}" for i, d in enumerate(SHOTS)
    ]
    lines.append("variants:")
    lines += [f"  - {{id: v{v:03d}, overrides: {{seed: {v}}}}}" for v in range(variants)]
    lines += [
        "budget: {limit_usd: 1000000, draft_tier: standard, final_tier: pro, finals: 0}",
        f"output: {{loudness_lufs: null, subtitles: false, archive: '{archive}'}}",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def draft_requests(script: Path) -> list[Any]:
    from pipeline.planning.plan import build_plan
    from pipeline.script.loader import load_script

    return build_plan(load_script(script).script).requests_for("draft")


# --- CPU and memory -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+sys CPU seconds) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def process_cpu(pid: int) -> float:
    """user+sys CPU seconds of one live process (0 when it is gone)."""
    stat = _proc_stat(pid)
    return stat[1] if stat else 0.0


def descendants_cpu() -> float:
    """CPU seconds of this process's live descendants (e.g. Prefect's ephemeral API server)."""
    parents: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat
    mine, frontier = set[int](), {os.getpid()}
    while frontier:
        frontier = {pid for pid, (ppid, _) in parents.items() if ppid in frontier} - mine
        mine |= frontier
    return sum(parents[pid][1] for pid in mine)


class CpuMeter:
    """CPU of this process, of its finished children (ffprobe) and of its live descendants."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, descendants_cpu()

    def stop(self) -> dict[str, float]:
        end = self._read()
        own, children, live = (e - s for e, s in zip(end, self.start, strict=True))
        return {"cpu_self_s": own, "cpu_children_s": children, "cpu_descendants_s": live}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_calls(calls: Any, request_ids: list[str]) -> list[int]:
    return [calls.get(rid, "status") for rid in request_ids]


# --- the sandbox, in its own process ----------------------------------------------------------


def serve_sandbox(config_json: str, data_dir: str) -> None:
    """Child process: a sandbox on a free port (printed), plus ``GET /bench/jobs`` (timings)."""
    import uvicorn
    from starlette.responses import JSONResponse

    from pipeline.providers.sandbox.app import create_app
    from pipeline.providers.sandbox.config import SandboxConfig
    from pipeline.providers.sandbox.server import uvicorn_config

    app = create_app(SandboxConfig.model_validate_json(config_json), Path(data_dir))
    state = app.state

    def jobs() -> list[dict[str, Any]]:
        offset = time.time() - time.monotonic()  # monotonic → wall clock
        return [
            {
                "request_id": j.request_id,
                "prompt": j.inp.prompt,
                "duration": j.inp.duration,
                "status": j.status,
                "accepted": j.created_at,
                "start": j.start_at + offset,
                "modelled_done": j.done_at + offset,
                "finished": j.finished_at,
            }
            for j in state.jobs.values()
        ]

    async def with_timings(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/jobs":
            await JSONResponse(jobs())(scope, receive, send)
            return
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    print(sock.getsockname()[1], flush=True)
    server = uvicorn.Server(uvicorn_config(with_timings, HOST, 0))  # type: ignore[arg-type]
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT that stopped it
        server.run(sockets=[sock])


class Sandbox:
    """A sandbox process started by the parent; ``jobs()`` reads its per-job timings."""

    def __init__(self, config: dict[str, Any], data_dir: Path, cache: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "renders").symlink_to(cache, target_is_directory=True)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-sandbox", json.dumps(config), str(data_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.origin = f"http://{HOST}:{port}"
        self.base_url = f"{self.origin}/v1"
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.origin}/bench/jobs", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def jobs(self) -> list[dict[str, Any]]:
        import httpx

        return list(httpx.get(f"{self.origin}/bench/jobs", timeout=30).json())

    def cpu(self) -> float:
        return process_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sandbox_config(args: argparse.Namespace, *, warm: bool = False) -> dict[str, Any]:
    if warm:  # render everything at once, no modelled waiting, no limits
        return {
            "latency_scale": 0.0,
            "render_scale": args.render_scale,
            "render_workers": 2,
            "slots": 64,
            "submit_rate_per_s": 10_000,
            "submit_burst": 10_000,
            "max_in_flight": 10_000,
        }
    # The provider-side limits stay generous (defaults): the client's limits are under test.
    return {"latency_scale": args.scale, "render_scale": args.render_scale, "slots": args.slots}


async def warm_cache(base_url: str, origin: str, specs: list[Any]) -> None:
    """Have the sandbox render every clip once (cached by content for the timed phases)."""
    from pipeline.providers.runcomfy import RunComfyProvider
    from pipeline.providers.settings import ProviderSettings

    settings = ProviderSettings(base_url=base_url, token_file=Path("/nonexistent"))
    async with RunComfyProvider(settings, download_origins=(origin,)) as provider:
        pending = [(await provider.submit(spec)).request_id for spec in specs]
        while pending:
            await asyncio.sleep(0.5)
            states = await asyncio.gather(*(provider.status(rid) for rid in pending))
            pending = [s.request_id for s in states if not s.state.is_terminal]


# --- phases (each in a fresh child process) ---------------------------------------------------


async def phase_engine(p: dict[str, Any]) -> dict[str, Any]:
    from pipeline.planning.plan import build_plan
    from pipeline.render.limits import LocalLimits
    from pipeline.render.session import open_run
    from pipeline.render.settings import RunSettings
    from pipeline.script.loader import load_script

    settings = RunSettings(
        runs_dir=Path(p["runs_dir"]),
        max_in_flight=p["in_flight"],
        submit_rate_per_s=p["rate"],
        submit_burst=p["burst"],
        sandbox_url=p["base_url"],
        sandbox_latency_scale=p["scale"],
        sandbox_render_scale=p["render_scale"],
    )
    loaded = load_script(p["script"])
    plan = build_plan(loaded.script)
    # Light tracing (a few dict writes per job) to split each in-flight slot's time: when the
    # job's task took and released its slot, which request it submitted, when it last had an
    # answer to a status call (the terminal one).
    held: dict[Any, list[list[float]]] = {}
    submitted: dict[Any, str] = {}
    last_status: dict[str, float] = {}

    class TracedLimits(LocalLimits):
        @contextlib.asynccontextmanager
        async def in_flight(self) -> Any:
            async with super().in_flight():
                span = [time.time(), 0.0]
                held.setdefault(asyncio.current_task(), []).append(span)
                try:
                    yield
                finally:
                    span[1] = time.time()

    def on_event(event: str, _request: Any, detail: str) -> None:
        if event == "submitted":
            submitted[asyncio.current_task()] = detail

    limits = TracedLimits(p["in_flight"], p["rate"], p["burst"])
    rss_before = peak_rss_mb()
    async with open_run(
        loaded, plan, run_id=RUN_ID, settings=settings, provider="sandbox", limits=limits
    ) as session:
        provider = session.provider.provider
        status = provider.status

        async def traced_status(request_id: str) -> Any:
            info = await status(request_id)
            last_status[request_id] = time.time()
            return info

        provider.status = traced_status  # type: ignore[method-assign]
        session.engine.on_event = on_event
        requests = plan.requests_for("draft")
        meter, t0 = CpuMeter(), time.monotonic()
        results = await session.engine.run_pass(requests)
        makespan = time.monotonic() - t0
        cpu = meter.stop()
        ids = [r.clip.request_id for r in results if r.clip is not None]
        calls = status_calls(provider.calls, ids)
    slots = {
        rid: {"acquired": held[task][-1][0], "released": held[task][-1][1], "seen": last_status.get(rid)}
        for task, rid in submitted.items()
    }
    return {
        "jobs": len(requests),
        "ok": len(ids),
        "makespan_s": makespan,
        **cpu,
        "status_calls": calls,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "pass_started": time.time() - (time.monotonic() - t0),
        "slots": slots,
    }


async def phase_flow(p: dict[str, Any]) -> dict[str, Any]:
    # The environment (KLINGFLOW_*, PREFECT_*) was set by the parent before this process began.
    from flows.render import render
    from pipeline.render.engine import Engine

    seen: dict[str, Any] = {}
    original = Engine.run_pass

    async def timed_run_pass(self: Engine, requests: Any) -> Any:
        meter, t0 = CpuMeter(), time.monotonic()
        seen["pass_started"] = time.time()
        results = await original(self, requests)
        seen["makespan_s"] = time.monotonic() - t0
        seen.update(meter.stop())
        seen["jobs"] = len(requests)
        ids = [r.clip.request_id for r in results if r.clip is not None]
        seen["ok"] = len(ids)
        seen["status_calls"] = status_calls(self.provider.calls, ids)  # type: ignore[attr-defined]
        seen["peak_rss_pass_mb"] = peak_rss_mb()
        return results

    Engine.run_pass = timed_run_pass  # type: ignore[method-assign]
    rss_before = peak_rss_mb()
    meter, t0 = CpuMeter(), time.monotonic()
    summary = await render(
        script=p["script"], run_id=RUN_ID, provider="sandbox", max_in_flight=p["in_flight"]
    )
    total = time.monotonic() - t0
    whole = meter.stop()
    return {
        **seen,
        "flow_total_s": total,
        "flow_cpu_self_s": whole["cpu_self_s"],
        "flow_cpu_children_s": whole["cpu_children_s"],
        "flow_cpu_descendants_s": whole["cpu_descendants_s"],
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "masters": len(summary["masters"]),
        "masters_delivered": sum(1 for m in summary["masters"] if m["path"] and not m["error"]),
        "delivered": summary["delivered"],
    }


async def fixed_poll(provider: Any, request_id: str, interval: float) -> None:
    """The RunComfy CLI's wait (as ``scripts/bench_polling.py``): a status call every ``interval``."""
    while True:
        await asyncio.sleep(interval)
        if (await provider.status(request_id)).state.is_terminal:
            return


async def phase_baseline(p: dict[str, Any]) -> dict[str, Any]:
    from pipeline.providers.runcomfy import RunComfyProvider
    from pipeline.providers.settings import ProviderSettings

    requests = draft_requests(Path(p["script"]))
    subset = [requests[i] for i in p["indices"]]
    out = Path(p["runs_dir"])  # made by the parent
    settings = ProviderSettings(base_url=p["base_url"], token_file=Path("/nonexistent"))
    rss_before = peak_rss_mb()
    async with RunComfyProvider(settings, download_origins=(p["origin"],)) as provider:
        meter, t0 = CpuMeter(), time.monotonic()
        ids = []
        for n, request in enumerate(subset):
            spec = request.spec()
            rid = (await provider.submit(spec)).request_id
            await fixed_poll(provider, rid, CLI_INTERVAL_S * p["scale"])
            result = await provider.result(rid)
            if result.video_url is not None:
                await provider.download(result.video_url, out / f"{n:03d}.mp4", spec)
                ids.append(rid)
        makespan = time.monotonic() - t0
        cpu = meter.stop()
        calls = status_calls(provider.calls, ids)
    return {
        "jobs": len(subset),
        "ok": len(ids),
        "makespan_s": makespan,
        **cpu,
        "status_calls": calls,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


PHASES = {"engine": phase_engine, "flow": phase_flow, "baseline": phase_baseline}


def run_phase(name: str, params: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    result_file = Path(params["runs_dir"]).with_suffix(".json")
    params = {**params, "result_file": str(result_file)}
    subprocess.run(
        [sys.executable, __file__, "--phase", name, json.dumps(params)],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return dict(json.loads(result_file.read_text()))


# --- the lower bound --------------------------------------------------------------------------


def lower_bound(
    jobs: list[dict[str, Any]], in_flight: int, rate: float, burst: int, slots: int
) -> dict[str, float]:
    """The bound described in the module docstring, from the sandbox's per-job timings."""
    done = [j for j in jobs if j["finished"] is not None]
    latencies = sorted(j["finished"] - j["accepted"] for j in done)
    n = len(latencies)
    by_in_flight = sum(latencies) / in_flight
    by_rate = max(max(0.0, (n - k - burst) / rate) + latencies[k] for k in range(n))
    by_slots = sum(j["modelled_done"] - j["start"] for j in done) / slots
    # Sanity: the limits as the sandbox saw them.
    events = sorted([(j["accepted"], 1) for j in done] + [(j["finished"], -1) for j in done])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    accepted = sorted(j["accepted"] for j in done)
    window = max(sum(1 for b in accepted[i:] if b - a < 1.0) for i, a in enumerate(accepted))
    lag = [j["finished"] - j["modelled_done"] for j in done]
    return {
        "bound_s": max(by_in_flight, by_rate, by_slots),
        "by_in_flight_s": by_in_flight,
        "by_rate_s": by_rate,
        "by_slots_s": by_slots,
        "latency_mean_s": statistics.mean(latencies),
        "latency_min_s": latencies[0],
        "latency_max_s": latencies[-1],
        "latency_sum_s": sum(latencies),
        "render_lag_max_s": max(lag),
        "render_lag_mean_s": statistics.mean(lag),
        "observed_peak_in_flight": peak,
        "observed_max_submits_1s": window,
        "first_accept": accepted[0],
        "last_finish": max(j["finished"] for j in done),
    }


def slot_breakdown(phase: dict[str, Any], jobs: list[dict[str, Any]], in_flight: int) -> dict[str, float]:
    """Mean seconds per job of in-flight slot time, split (engine phase, traced)."""
    at_sandbox = {j["request_id"]: j for j in jobs}
    parts: dict[str, list[float]] = {"before": [], "latency": [], "poll_delay": [], "after": [], "held": []}
    for rid, slot in phase.pop("slots").items():
        job = at_sandbox.get(rid)
        if job is None or job["finished"] is None or slot["seen"] is None:
            continue
        parts["before"].append(job["accepted"] - slot["acquired"])
        parts["latency"].append(job["finished"] - job["accepted"])
        parts["poll_delay"].append(slot["seen"] - job["finished"])
        parts["after"].append(slot["released"] - slot["seen"])
        parts["held"].append(slot["released"] - slot["acquired"])
    n = phase["jobs"]
    out = {k: statistics.mean(v) for k, v in parts.items()}
    out["idle"] = (in_flight * phase["makespan_s"] - sum(parts["held"])) / n
    out["per_job"] = in_flight * phase["makespan_s"] / n
    return out


# --- the parent -------------------------------------------------------------------------------


def fmt_calls(calls: list[int]) -> str:
    return f"{statistics.mean(calls):.1f} / {max(calls)}"


def main(args: argparse.Namespace) -> None:
    cache = Path(args.cache_dir or Path(tempfile.gettempdir()) / f"kf-bench-throughput-r{args.render_scale}")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kf_bench_throughput_") as tmp:
        work = Path(tmp)
        script = work / "bench-throughput.yaml"
        write_script(script, args.variants, work / "archive")
        requests = draft_requests(script)
        n = len(requests)
        print(
            f"{n} draft jobs; in flight {args.in_flight}, {args.rate}/s submits (burst {args.burst}), "
            f"latency scale {args.scale}, sandbox slots {args.slots}",
            flush=True,
        )

        t0 = time.monotonic()
        sandbox = Sandbox(sandbox_config(args, warm=True), work / "sandbox-warm", cache)
        try:
            asyncio.run(warm_cache(sandbox.base_url, sandbox.origin, [r.spec() for r in requests]))
        finally:
            sandbox.stop()
        print(f"render cache ready in {time.monotonic() - t0:.1f} s ({cache})", flush=True)

        common = {
            "script": str(script),
            "in_flight": args.in_flight,
            "rate": args.rate,
            "burst": args.burst,
            "scale": args.scale,
            "render_scale": args.render_scale,
        }
        phases: dict[str, dict[str, Any]] = {}
        breakdown: dict[str, float] = {}
        bounds: dict[str, dict[str, float]] = {}
        order = ["engine"] + ([] if args.skip_flow else ["flow"]) + ["baseline"]
        for name in order:
            sandbox = Sandbox(sandbox_config(args), work / f"sandbox-{name}", cache)
            try:
                params = {
                    **common,
                    "runs_dir": str(work / f"runs-{name}"),
                    "base_url": sandbox.base_url,
                    "origin": sandbox.origin,
                }
                env = None
                if name == "baseline":
                    Path(params["runs_dir"]).mkdir()
                    k = min(args.baseline_jobs, n)
                    params["indices"] = [round(i * n / k) for i in range(k)]
                elif name == "flow":
                    env = flow_env(params, work)
                cpu0 = sandbox.cpu()
                print(f"phase {name} ...", flush=True)
                phases[name] = run_phase(name, params, env)
                phases[name]["sandbox_cpu_s"] = sandbox.cpu() - cpu0
                if name != "baseline":
                    jobs = sandbox.jobs()
                    bounds[name] = lower_bound(jobs, args.in_flight, args.rate, args.burst, args.slots)
                    if "slots" in phases[name]:
                        breakdown = slot_breakdown(phases[name], jobs, args.in_flight)
                else:
                    jobs = sandbox.jobs()
                    phases[name]["latency_sum_s"] = sum(
                        j["finished"] - j["accepted"] for j in jobs if j["finished"]
                    )
            finally:
                sandbox.stop()
            print(f"phase {name}: {phases[name]['makespan_s']:.1f} s", flush=True)
        report(args, n, phases, bounds, breakdown)


def flow_env(params: dict[str, Any], work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KLINGFLOW_"))}
    env.update(
        KLINGFLOW_RUNS_DIR=params["runs_dir"],
        KLINGFLOW_SANDBOX_URL=params["base_url"],
        KLINGFLOW_SANDBOX_LATENCY_SCALE=str(params["scale"]),
        KLINGFLOW_SANDBOX_RENDER_SCALE=str(params["render_scale"]),
        KLINGFLOW_SUBMIT_RATE_PER_S=str(params["rate"]),
        KLINGFLOW_SUBMIT_BURST=str(params["burst"]),
        KLINGFLOW_MAX_IN_FLIGHT=str(params["in_flight"]),
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


def report(
    args: argparse.Namespace,
    n: int,
    phases: dict[str, dict[str, Any]],
    bounds: dict[str, dict[str, float]],
    breakdown: dict[str, float],
) -> None:
    rows = []
    for name, label in (
        ("engine", "klingflow engine (`Engine.run_pass`)"),
        ("flow", "klingflow Prefect flow, draft pass"),
    ):
        if name not in phases:
            continue
        p, b = phases[name], bounds[name]
        rows.append(
            (
                label,
                f"{p['ok']}/{p['jobs']}",
                f"{p['makespan_s']:.1f}",
                f"{b['bound_s']:.1f}",
                f"{100 * b['bound_s'] / p['makespan_s']:.0f} %",
                f"{1000 * p['cpu_self_s'] / p['jobs']:.1f}",
                f"{1000 * (p['cpu_children_s'] + p['cpu_descendants_s']) / p['jobs']:.1f}",
                fmt_calls(p["status_calls"]),
                f"{p['peak_rss_mb']:.0f}",
            )
        )
    base = phases["baseline"]
    scale_up = n / base["jobs"]
    rows.append(
        (
            f"baseline: one at a time, status every 2 s (CLI); {base['jobs']} jobs ×{scale_up:.3g}",
            f"{base['ok']}/{base['jobs']}",
            f"{base['makespan_s'] * scale_up:.1f} (measured {base['makespan_s']:.1f})",
            "—",
            "—",
            f"{1000 * base['cpu_self_s'] / base['jobs']:.1f}",
            f"{1000 * (base['cpu_children_s'] + base['cpu_descendants_s']) / base['jobs']:.1f}",
            fmt_calls(base["status_calls"]),
            f"{base['peak_rss_mb']:.0f}",
        )
    )
    header = (
        "| run | jobs ok | makespan (s) | lower bound (s) | efficiency | orchestration CPU / job (ms) "
        "| ffprobe + Prefect server CPU / job (ms) | status calls / job (mean / max) | peak RSS (MB) |"
    )
    table = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]

    e = bounds["engine"]
    notes = [
        f"Bound terms ({'engine' if 'flow' not in bounds else 'engine / flow'} run): "
        + "; ".join(
            f"{key}: " + " / ".join(f"{bounds[ph][k]:.1f} s" for ph in bounds)
            for key, k in (
                (f"in flight Σℓ/{args.in_flight}", "by_in_flight_s"),
                (f"submit rate max_k[(N−k−{args.burst})/{args.rate:g} + L₍ₖ₊₁₎]", "by_rate_s"),
                (f"GPU slots Σrender/{args.slots}", "by_slots_s"),
            )
        ),
        f"Sandbox latency per job ℓ (accept → complete): mean {e['latency_mean_s']:.2f} s, "
        f"min {e['latency_min_s']:.2f} s, max {e['latency_max_s']:.2f} s "
        f"(= {e['latency_mean_s'] / args.scale:.0f} s real-world mean at scale {args.scale}); "
        f"completion later than modelled (sandbox lag) by {e['render_lag_mean_s'] * 1000:.0f} ms "
        f"on average, at most {e['render_lag_max_s'] * 1000:.0f} ms.",
        "Limits as the sandbox saw them: "
        + "; ".join(
            f"{ph}: peak {bounds[ph]['observed_peak_in_flight']} in flight, "
            f"at most {bounds[ph]['observed_max_submits_1s']} submits in any 1 s"
            for ph in bounds
        ),
        "Where the rest goes: "
        + "; ".join(
            f"{ph}: first accept {1000 * (bounds[ph]['first_accept'] - phases[ph]['pass_started']):.0f} ms "
            f"after the pass started, pass ended "
            f"{phases[ph]['pass_started'] + phases[ph]['makespan_s'] - bounds[ph]['last_finish']:.2f} s after "
            f"the last completion at the sandbox; an in-flight slot is held "
            f"{1000 * (args.in_flight * phases[ph]['makespan_s'] - bounds[ph]['latency_sum_s']) / phases[ph]['jobs']:.0f}"
            " ms per job beyond ℓ (F × makespan − Σℓ) / N: polling delay, submit, result, download + ffprobe, "
            "idle slots"
            for ph in bounds
        ),
        f"In-flight slot time per job in the engine run (F × makespan / N = {breakdown['per_job']:.2f} s, "
        "traced): "
        f"slot taken → accepted at the sandbox (waiting for a submit turn, reserving, submit round trip) "
        f"{1000 * breakdown['before']:.0f} ms; sandbox latency ℓ {1000 * breakdown['latency']:.0f} ms; "
        f"completed → seen by the poller {1000 * breakdown['poll_delay']:.0f} ms; seen → slot released "
        f"(result, download, ffprobe check, job store) {1000 * breakdown['after']:.0f} ms; slot idle "
        f"{1000 * breakdown['idle']:.0f} ms.",
        "Sandbox process CPU during each phase: "
        + ", ".join(f"{ph} {phases[ph]['sandbox_cpu_s']:.1f} s" for ph in phases),
    ]
    if "flow" in phases:
        f = phases["flow"]
        notes.append(
            f"Prefect flow end to end (start-up, plan artifact, draft pass, {args.variants} draft "
            f"masters without loudness pass or subtitles, archive, report): {f['flow_total_s']:.1f} s wall; CPU {f['flow_cpu_self_s']:.1f} s "
            f"in the flow's process + {f['flow_cpu_descendants_s']:.1f} s Prefect server + "
            f"{f['flow_cpu_children_s']:.1f} s ffmpeg/ffprobe children; peak RSS {f['peak_rss_mb']:.0f} MB."
        )
    ratio = base["makespan_s"] * scale_up / phases["engine"]["makespan_s"]
    notes.append(
        f"Baseline: {base['jobs']} jobs spread evenly over the {n}, run one after another; makespan "
        f"extrapolated linearly (×{scale_up:.3g}); Σℓ of its jobs {base['latency_sum_s']:.1f} s, so "
        f"{(base['makespan_s'] - base['latency_sum_s']) / base['jobs'] * 1000:.0f} ms per job beyond the sandbox's "
        f"latency. klingflow's engine is {ratio:.1f}× faster and makes "
        f"{statistics.mean(base['status_calls']) / statistics.mean(phases['engine']['status_calls']):.0f}× "
        "fewer status calls per job."
    )

    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print("\n".join(table))
    print()
    for note in notes:
        print("- " + note)

    cmd = (
        f".venv/bin/python scripts/bench_throughput.py --variants {args.variants} --in-flight {args.in_flight} "
        f"--rate {args.rate:g} --burst {args.burst} --scale {args.scale:g} --baseline-jobs {args.baseline_jobs}"
    )
    md = [
        "## Throughput under provider limits (`scripts/bench_throughput.py`)",
        "",
        f"Run: `{cmd}`. {n} draft jobs ({args.variants} variants × 10 independent segments of 6–15 s, "
        f"standard tier, no audio) against a sandbox process (latency scale {args.scale}: queue wait + "
        f"render time ±30 %; {args.slots} GPU slots; clips pre-rendered once so ffmpeg does not compete) "
        f"under the client's limits: {args.in_flight} in flight, {args.rate:g} submits/s (burst {args.burst}). "
        "Times are wall seconds of this run. Each phase runs in a fresh process against a fresh sandbox "
        "with the same latency draws.",
        "",
        *table,
        "",
        "Lower bound, from the limits and the sandbox's own per-job latency ℓᵢ = completed − accepted "
        f"at the sandbox: max(Σℓᵢ / {args.in_flight} in flight; max over k of "
        f"[max(0, (N − k − {args.burst}) / {args.rate:g}) + L₍ₖ₊₁₎], the submit rate with the "
        "(k+1)-th shortest latency L₍ₖ₊₁₎ for the last k+1 jobs submitted, which includes the longest "
        f"latency; Σ render / {args.slots} GPU slots). It leaves out submit round trips, the polling "
        "delay and downloads, so 100 % cannot be reached. Efficiency = bound / makespan. Orchestration "
        "CPU = user + sys of the orchestrating process over the pass (the sandbox is another process); "
        "ffprobe checks of downloads and Prefect's ephemeral API server are in the next column.",
        "",
        *[f"- {note}" for note in notes],
    ]
    print()
    print("\n".join(md))
    if args.json:
        Path(args.json).write_text(json.dumps({"phases": phases, "bounds": bounds}, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-sandbox":
        serve_sandbox(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "--phase":
        phase_params = json.loads(sys.argv[3])
        outcome = asyncio.run(PHASES[sys.argv[2]](phase_params))
        Path(phase_params["result_file"]).write_text(json.dumps(outcome))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variants", type=int, default=20, help="variants × 10 segments = jobs")
    parser.add_argument("--in-flight", type=int, default=8, help="client limit: requests in flight")
    parser.add_argument("--rate", type=float, default=4.0, help="client limit: submits per second")
    parser.add_argument("--burst", type=int, default=4, help="client limit: submit burst")
    parser.add_argument("--scale", type=float, default=0.02, help="sandbox latency scale (and pollers')")
    parser.add_argument("--render-scale", type=float, default=0.05, help="sandbox picture size")
    parser.add_argument("--slots", type=int, default=None, help="sandbox GPU slots (default: --in-flight)")
    parser.add_argument("--baseline-jobs", type=int, default=20, help="jobs the baseline runs")
    parser.add_argument("--skip-flow", action="store_true", help="no Prefect flow phase")
    parser.add_argument("--cache-dir", default=None, help="render cache (default: in the temp dir)")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    cli = parser.parse_args()
    cli.slots = cli.slots or cli.in_flight
    main(cli)
