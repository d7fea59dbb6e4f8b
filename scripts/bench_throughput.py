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

Phases, each in a fresh process (``scripts/bench_throughput_phases.py``) against a fresh sandbox
process of ``pipeline/stack/sandbox.py`` (same seed, same latency draws):

1. ``engine``: ``open_run(...)`` + ``session.engine.run_pass(plan.requests_for("draft"))``;
2. ``flow``: the Prefect flow ``flows.render.render`` in ephemeral mode (each job a task run,
   progress artifacts, local limits), with lighter draft masters (tiny pictures, no loudness pass,
   no subtitles, no finals); its draft pass is timed by wrapping ``Engine.run_pass``, and the
   whole flow (Prefect start-up, plan artifact, masters, archive, report) is reported beside it;
3. ``baseline``: the RunComfy CLI's way: one job at a time, status polled every 2 s (× the
   latency scale), then result and download with the same verification; run on an evenly spread
   subset (``--baseline-jobs``) and extrapolated linearly to all jobs.

Lower bound (``pipeline/stack/measure.py`` has the first two terms). Let job *i* be accepted by the sandbox at *a_i* and completed there at *f_i*, so its
latency at the sandbox is ℓ_i = f_i − a_i (queue wait + render, as the sandbox drew them). With
F requests in flight, a submit rate R (token bucket, burst B) and N jobs:

- in flight: each job holds one of the F slots at least over [a_i, f_i], so makespan ≥ Σℓ_i / F;
- submit rate: the j-th submit cannot happen before (j − B)/R; the last k + 1 jobs are submitted
  no earlier than (N − k − B)/R and one of them takes at least the (k + 1)-th shortest latency
  L₍ₖ₊₁₎, so makespan ≥ max over k of [max(0, (N − k − B)/R) + L₍ₖ₊₁₎] (k = N − 1 gives the
  longest single latency);
- sandbox GPU slots (S): makespan ≥ Σ(render time) / S (with S ≥ F, the default, never binding).

bound = the largest of these. It ignores submit round trips and the polling delay, so 100 % is
unreachable; what is left over is what orchestration and polling cost. (The result, the download
and its ffprobe check come after the engine releases the slot at the terminal status, so they do
not count against the in-flight limit.)

The sandbox renders real (tiny) MP4s with ffmpeg; on 2 cores that would compete with what is
measured, so every clip is rendered once beforehand into a cache (``--cache-dir``, reused by
later runs) and the timed sandboxes serve cached files at their modelled times.

Usage: ``.venv/bin/python scripts/bench_throughput.py [--variants 20] [--in-flight 8] [--rate 4]
[--burst 4] [--scales 0.02 0.1] [--baseline-jobs 20] [--skip-flow]`` (~5 min at the first
scale, where every phase runs; ~5 min more for the engine at 0.1; the first run also renders the
cache, ~1–2 min more). The engine runs at every scale: a table compares them with the projection
to real-world latencies (:func:`scale_row`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.planning.plan import PlannedRequest, build_plan
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.script.loader import load_script
from pipeline.stack.measure import (
    limit_bound,
    load_average,
    max_in_window,
    peak_concurrency,
    process_cpu,
)
from pipeline.stack.sandbox import SandboxProcess, warm_render_cache

SHOTS = (10, 8, 12, 6, 15, 10, 9, 14, 7, 11)  # one request each (no two fit in 15 s together)
#: The measured phases, each run in a fresh process of its own.
PHASES_SCRIPT = Path(__file__).with_name("bench_throughput_phases.py")


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


def run_phase(name: str, params: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    result_file = Path(params["runs_dir"]).with_suffix(".json")
    params = {**params, "result_file": str(result_file)}
    subprocess.run(
        [sys.executable, str(PHASES_SCRIPT), name, json.dumps(params)],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return dict(json.loads(result_file.read_text()))


def draft_requests(script: Path) -> list[PlannedRequest]:
    """The draft pass of ``script``: what every phase buys."""
    return build_plan(load_script(script).script).requests_for("draft")


# --- the lower bound --------------------------------------------------------------------------


def lower_bound(
    jobs: list[dict[str, Any]], in_flight: int, rate: float, burst: int, slots: int
) -> dict[str, float]:
    """The bound described in the module docstring, from the sandbox's per-job timings."""
    done = [j for j in jobs if j["finished"] is not None]
    bound = limit_bound([j["finished"] - j["accepted"] for j in done], in_flight, rate, burst)
    by_slots = sum(j["modelled_done"] - j["start"] for j in done) / slots
    lag = [j["finished"] - j["modelled_done"] for j in done]
    return {
        **bound,
        "bound_s": max(bound["bound_s"], by_slots),
        "by_slots_s": by_slots,
        "render_lag_max_s": max(lag),
        "render_lag_mean_s": statistics.mean(lag),
        # Sanity: the limits as the sandbox saw them.
        "observed_peak_in_flight": peak_concurrency([(j["accepted"], j["finished"]) for j in done]),
        "observed_max_submits_1s": max_in_window([j["accepted"] for j in done], 1.0),
        "first_accept": min(j["accepted"] for j in done),
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
    args.load_before = load_average()
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
        warm_render_cache(
            [r.spec() for r in requests], cache, work / "sandbox-warm", render_scale=args.render_scale
        )
        print(f"render cache ready in {time.monotonic() - t0:.1f} s ({cache})", flush=True)

        summary = []
        for i, scale in enumerate(args.scales):
            args.scale = scale
            order = ["engine"] if i else ["engine"] + ([] if args.skip_flow else ["flow"]) + ["baseline"]
            phases, bounds, breakdown = measure(args, script, work, cache, n, order)
            if i == 0:
                report(args, n, phases, bounds, breakdown)
            summary.append(scale_row(args, phases["engine"], bounds["engine"], breakdown))
        print_scales(args, summary)


def measure(
    args: argparse.Namespace, script: Path, work: Path, cache: Path, n: int, order: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]], dict[str, float]]:
    """Run ``order``'s phases at ``args.scale``, each against a fresh sandbox process."""
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
    for name in order:
        sandbox = SandboxProcess.probed(
            timed_config(args), work / f"sandbox-{name}-{args.scale:g}", render_cache=cache
        )
        sandbox.start()
        try:
            params = {
                **common,
                "runs_dir": str(work / f"runs-{name}-{args.scale:g}"),
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
            cpu0 = process_cpu(sandbox.pid)
            print(f"phase {name} ...", flush=True)
            phases[name] = run_phase(name, params, env)
            phases[name]["sandbox_cpu_s"] = process_cpu(sandbox.pid) - cpu0
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
    return phases, bounds, breakdown


def scale_row(
    args: argparse.Namespace, engine: dict[str, Any], bound: dict[str, float], slot: dict[str, float]
) -> dict[str, Any]:
    """The engine phase at one latency scale, and its real-world projection.

    Projection: an in-flight slot's time per job splits into parts that scale with the provider's
    latency (ℓ itself, the polling lateness, idle slots while the pass ramps up and down) and parts
    that do not (submit turn and round trip; the job store at the terminal status). At scale 1
    the first grow by 1 / scale and the second stay: efficiency ≈ ℓ / slot time, so projected
    ℓ/s ÷ ((ℓ + lateness + idle)/s + before + after).
    """
    scaled = slot["latency"] + slot["poll_delay"] + slot["idle"]
    fixed = slot["before"] + slot["after"]
    real_latency = slot["latency"] / args.scale
    return {
        "scale": args.scale,
        "jobs": engine["jobs"],
        "ok": engine["ok"],
        "makespan_s": engine["makespan_s"],
        "bound_s": bound["bound_s"],
        "efficiency": bound["bound_s"] / engine["makespan_s"],
        "calls_mean": statistics.mean(engine["status_calls"]),
        "calls_max": max(engine["status_calls"]),
        "lateness_ms": 1000 * slot["poll_delay"],
        "lateness_share": slot["poll_delay"] / slot["per_job"],
        "fixed_ms": 1000 * fixed,
        "projected": real_latency / (scaled / args.scale + fixed),
        "load": " ".join(load_average()),
    }


def print_scales(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The engine at every latency scale, and the projection to real-world latencies."""
    print()
    print(
        "| latency scale | jobs ok | makespan (s) | lower bound (s) | efficiency | status calls / job "
        "(mean / max) | polling lateness / job (ms; share of slot time) | fixed slot time / job (ms) "
        "| projected real-world efficiency | load average after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['scale']:g} | {r['ok']}/{r['jobs']} | {r['makespan_s']:.1f} | {r['bound_s']:.1f} "
            f"| {100 * r['efficiency']:.1f} % | {r['calls_mean']:.1f} / {r['calls_max']} "
            f"| {r['lateness_ms']:.0f} ({100 * r['lateness_share']:.1f} %) | {r['fixed_ms']:.0f} "
            f"| {100 * r['projected']:.1f} % | {r['load']} |"
        )
    print(
        "\nProjected real-world efficiency: the slot time's latency-bound parts (ℓ, polling lateness, "
        "idle slots) scaled to scale 1, its fixed parts (submit turn and round trip; the job store at "
        "the terminal status, where the slot is released) kept; efficiency ≈ ℓ / slot time."
    )
    if args.json:
        path = Path(args.json)
        data = json.loads(path.read_text()) if path.exists() else {}
        data["scales"] = rows
        path.write_text(json.dumps(data, indent=2) + "\n")


def timed_config(args: argparse.Namespace) -> SandboxConfig:
    """The timed phases' sandbox: the provider-side limits stay generous (defaults), the client's
    limits are under test."""
    return SandboxConfig(latency_scale=args.scale, render_scale=args.render_scale, slots=args.slots)


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
            " ms per job beyond ℓ (F × makespan − Σℓ) / N: polling delay, submit, the job store at the "
            "terminal status, idle slots (result, download and ffprobe come after the release)"
            for ph in bounds
        ),
        f"In-flight slot time per job in the engine run (F × makespan / N = {breakdown['per_job']:.2f} s, "
        "traced): "
        f"slot taken → accepted at the sandbox (waiting for a submit turn, reserving, submit round trip) "
        f"{1000 * breakdown['before']:.0f} ms; sandbox latency ℓ {1000 * breakdown['latency']:.0f} ms; "
        f"completed → seen by the poller {1000 * breakdown['poll_delay']:.0f} ms; seen → slot released "
        f"(the job store; result, download and ffprobe come after it) {1000 * breakdown['after']:.0f} ms; slot idle "
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
        f"{platform.python_implementation()} {platform.python_version()}; load average "
        f"{' '.join(args.load_before)} before, {' '.join(load_average())} after"
    )

    cmd = (
        f".venv/bin/python scripts/bench_throughput.py --variants {args.variants} --in-flight {args.in_flight} "
        f"--rate {args.rate:g} --burst {args.burst} --scales {' '.join(f'{x:g}' for x in args.scales)} "
        f"--baseline-jobs {args.baseline_jobs}"
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
        "delay (downloads come after the slot is released), so 100 % cannot be reached. Efficiency = bound / makespan. Orchestration "
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variants", type=int, default=20, help="variants × 10 segments = jobs")
    parser.add_argument("--in-flight", type=int, default=8, help="client limit: requests in flight")
    parser.add_argument("--rate", type=float, default=4.0, help="client limit: submits per second")
    parser.add_argument("--burst", type=int, default=4, help="client limit: submit burst")
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[0.02, 0.1],
        help="sandbox latency scales (and pollers'); every phase at the first, the engine at the others",
    )
    parser.add_argument("--render-scale", type=float, default=0.05, help="sandbox picture size")
    parser.add_argument("--slots", type=int, default=None, help="sandbox GPU slots (default: --in-flight)")
    parser.add_argument("--baseline-jobs", type=int, default=20, help="jobs the baseline runs")
    parser.add_argument("--skip-flow", action="store_true", help="no Prefect flow phase")
    parser.add_argument("--cache-dir", default=None, help="render cache (default: in the temp dir)")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    cli = parser.parse_args()
    cli.slots = cli.slots or cli.in_flight
    cli.scale = cli.scales[0]
    main(cli)
