"""Benchmark: one batch of renders on 1 vs 2 Prefect process workers, under shared provider limits.

The whole scale-out stack is stood up once by ``pipeline/stack/scale.py`` (as for
``tests/flows/test_scale.py``): a throwaway PostgreSQL cluster, a Prefect server on it, moto's S3
(archive and shared clips), the job store on PostgreSQL, one process work pool. The batch is
``--scripts`` render scripts of ``--variants`` × ``--segments`` draft jobs each (standard tier, no audio, ``finals: 0``; one 8–15 s shot per
request), deployed with ``klingflow deploy``. Two rounds, each against a fresh sandbox process
(same latency dice), fresh workers and a fresh job store (the clip library lives in it: on one
store, round 2 would reuse round 1's clips and buy nothing):

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

Lower bound on the generation (``pipeline/stack/measure.py``), from the limits and each job's
latency at the sandbox ℓᵢ = charged − accepted (ledger): max of Σℓᵢ / F (each job holds one of F in-flight slots for at least ℓᵢ) and
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

``--stage cpu`` measures the CPU-bound work on its own: generation takes ~no time (clips from the
cache, latency × 0.001), each master re-encodes its clips with crossfades, and worker *i* (with
the flow runs it starts) is pinned to core *i* with ``taskset``, the honest stand-in on one
machine for workers on machines of their own; the shared services stay mostly idle.

Usage: ``.venv/bin/python scripts/bench_scale.py [--scripts 6] [--variants 2] [--segments 5]
[--in-flight 6] [--rate 3] [--burst 3] [--latency-scale 0.05] [--stage cpu] [--json PATH]``
(~6 min).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.stack.measure import (
    Sampler,
    limit_bound,
    load_average,
    max_in_window,
    postmaster_pid,
    start_latencies,
    submitted_by,
)
from pipeline.stack.postgres import PostgresCluster
from pipeline.stack.prefect_server import Worker
from pipeline.stack.sandbox import SandboxProcess, warm_render_cache
from pipeline.stack.scale import Limits, ScaleStack, draft_specs, generous_sandbox, sandbox_env

BUCKET = "klingflow-bench-scale"
POOL = "bench-scale"
#: One request per shot: no two of these fit in one 15 s request together.
SHOT_SECONDS = (10, 8, 12, 9, 15, 11, 8, 14, 10, 13)
SANDBOX_SEED = 7
#: ``--stage cpu``'s defaults: per flow run one master re-encoding ~60 s of 960×540.
CPU_STAGE: dict[str, Any] = {
    "scripts": 4, "variants": 1, "segments": 6, "latency_scale": 0.001, "render_scale": 0.5,
}  # fmt: skip


# --- the render scripts -------------------------------------------------------------------------


def write_script(path: Path, index: int, variants: int, segments: int, transition: str = "cut") -> str:
    """Script ``bench-scale-{index}``: one independent narrative, ``segments`` one-shot requests;
    ``transition: crossfade`` makes each master a full re-encode (the CPU-bound stage)."""
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
        f"output: {{transition: {transition}, loudness_lufs: null, subtitles: false, "
        f"archive: 's3://{BUCKET}/archive'}}",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return name


def run_round(
    args: argparse.Namespace,
    stack: ScaleStack,
    scripts: dict[str, Path],
    cache: Path,
    round_no: int,
    n_workers: int,
    jobs_per_script: int,
) -> dict[str, Any]:
    limit = args.worker_limit or math.ceil(len(scripts) / n_workers)
    names = list(scripts)
    run_ids = {name: f"bench-r{round_no}-{name}" for name in names}
    n_jobs = jobs_per_script * len(names)
    renders_before = len(list(cache.glob("*.mp4")))
    stack.fresh_store()  # else round 2 would reuse round 1's clips from the library, buying nothing
    sandbox = SandboxProcess.probed(
        generous_sandbox(args.latency_scale, args.render_scale, args.gpu_slots, seed=SANDBOX_SEED),
        stack.folder / f"sandbox-r{round_no}",
        render_cache=cache,
    ).start()
    workers: list[Worker] = []
    try:
        workers = stack.start_workers(
            [f"r{round_no}-w{i}" for i in range(1, n_workers + 1)],
            limit=limit,
            env=sandbox_env(sandbox, latency_scale=args.latency_scale),
            cores=list(range(n_workers)) if args.stage == "cpu" else None,
        )
        stack.wait_online(workers)
        time.sleep(args.query_seconds)  # every worker has polled the (empty) pool at least once
        load_before = load_average()
        assert stack.server is not None
        assert stack.server.proc is not None
        roots = {w.proc.pid: "workers" for w in workers if w.proc is not None}
        roots |= {
            stack.server.proc.pid: "prefect server",
            postmaster_pid(stack.postgres.data_dir): "postgres",
            sandbox.pid: "sandbox",
        }
        sampler = Sampler(roots, interval=args.sample_interval).start()

        t0 = time.time()
        ids = stack.trigger_all({name: {"run_id": run_ids[name]} for name in names})
        triggered_s = time.time() - t0
        final = stack.wait_final(ids, args.round_timeout)
        usage = sampler.stop("bench process (moto S3, API polling)")
        load_after = load_average()

        async def histories(client: Any) -> list[list[Any]]:
            return list(await asyncio.gather(*(client.read_flow_run_states(i) for i in ids)))

        states = stack.api(histories)
        ledger = sandbox.ledger()
        stats = sandbox.stats()
        calls = sandbox.calls()
        sb_jobs = sandbox.jobs()
        store = stack.jobs(*run_ids.values())
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
    assert not not_completed, f"flow runs not Completed: {not_completed}\n{stack.tails()}"
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
    bound = limit_bound(
        [e["charged_at"] - e["accepted_at"] for e in ledger], args.in_flight, args.rate, args.burst
    )
    first_accept = min(e["accepted_at"] for e in ledger)
    last_charge = max(e["charged_at"] for e in ledger)
    starts = start_latencies(final, states)
    per_worker = {w.name: sum(1 for v in ran_on.values() if v == [w.name]) for w in workers}
    lag = [j["finished"] - j["modelled_done"] for j in sb_jobs if j["finished"]]
    return {
        "round": round_no,
        "workers": n_workers,
        "worker_limit": limit,
        "cores": list(range(n_workers)) if args.stage == "cpu" else None,
        "flow_runs": len(ids),
        "flow_runs_per_worker": per_worker,
        "jobs": n_jobs,
        "masters_archived": master_count,
        "trigger_s": triggered_s,
        "wall_s": wall,
        "jobs_per_s": n_jobs / wall,
        **bound,
        "bound_rate_simple_s": max(0.0, (n_jobs - args.burst) / args.rate),
        "first_accept_after_trigger_s": first_accept - t0,
        "generation_span_s": last_charge - first_accept,
        "tail_after_last_charge_s": end - last_charge,
        "max_in_flight_seen": stats["max_in_flight_seen"],
        "max_submits_1s": max_in_window(times, 1.0),
        "rate_limited": stats["rate_limited"],
        "calls": calls,
        # The adapter looks through /result (a finished request needs no further call), so a
        # look is either kind of call.
        "poll_calls_per_job": (calls.get("status", 0) + calls.get("result", 0)) / n_jobs,
        "sandbox_lag_mean_s": statistics.mean(lag),
        "sandbox_lag_max_s": max(lag),
        "renders_during_round": len(list(cache.glob("*.mp4"))) - renders_before,
        **starts,
        "load_before": load_before,
        "load_after": load_after,
        **usage,
    }


# --- the whole benchmark -----------------------------------------------------------------------------


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
        pg = PostgresCluster(pg_dir, settings={"fsync": "off"})
        stop.append(pg.stop)
        pg.start()
        limits = Limits(args.in_flight, args.rate, args.burst)
        stack = ScaleStack(work, pg, limits, bucket=BUCKET, pool=POOL, query_seconds=args.query_seconds)
        stop.append(stack.stop)
        stack.start()
        scripts: dict[str, Path] = {}
        (work / "scripts").mkdir()
        for i in range(args.scripts):
            path = work / "scripts" / f"bench-scale-{i}.yaml"
            transition = "crossfade" if args.stage == "cpu" else "cut"
            scripts[write_script(path, i, args.variants, args.segments, transition)] = path
        stack.cli("deploy", *(str(p) for p in scripts.values()), "--pool", POOL)
        specs = [s for p in scripts.values() for s in draft_specs(p)]
        jobs_per_script = len(specs) // len(scripts)
        assert jobs_per_script == args.variants * args.segments, (
            jobs_per_script,
            args.variants,
            args.segments,
        )
        print(
            f"stack up in {time.monotonic() - t_start:.0f} s: {len(scripts)} scripts × "
            f"{jobs_per_script} draft jobs; shared limits {args.in_flight} in flight, {args.rate:g} "
            f"submits/s (burst {args.burst})",
            flush=True,
        )
        cache = work / "render-cache"
        t = time.monotonic()
        warm_render_cache(specs, cache, work / "sandbox-warm", render_scale=args.render_scale)
        print(
            f"render cache: {len(list(cache.glob('*.mp4')))} clips in {time.monotonic() - t:.0f} s",
            flush=True,
        )
        for round_no, n_workers in enumerate(args.workers, start=1):
            print(f"round {round_no}: {n_workers} worker(s) ...", flush=True)
            result = run_round(args, stack, scripts, cache, round_no, n_workers, jobs_per_script)
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
        row("worker `--limit`; cores (taskset)", lambda r: f"{r['worker_limit']}; {r['cores'] or 'not pinned'}"),
        row("jobs charged / masters archived", lambda r: f"{r['jobs']} / {r['masters_archived']}"),
        row("wall: trigger → last flow run Completed", lambda r: f"{r['wall_s']:.1f} s"),
        row("jobs/s", lambda r: f"{r['jobs_per_s']:.2f}"),
        row("lower bound (in flight / submit rate)", lambda r: f"{r['bound_s']:.1f} s ({r['by_in_flight_s']:.1f} / {r['by_rate_s']:.1f})"),
        row("bound ÷ wall", lambda r: f"{100 * r['bound_s'] / r['wall_s']:.0f} %"),
        row("generation: first accept → last charge (bound ÷ span)", lambda r: f"{r['generation_span_s']:.1f} s ({100 * r['bound_s'] / r['generation_span_s']:.0f} %)"),
        row("trigger → first accept at the sandbox", lambda r: f"{r['first_accept_after_trigger_s']:.1f} s"),
        row("last charge → last flow run Completed (masters, archive)", lambda r: f"{r['tail_after_last_charge_s']:.1f} s"),
        row("flow run created → Pending / → Running (mean; max)", lambda r: f"{r['to_pending_mean_s']:.1f} / {r['to_running_mean_s']:.1f} s; {r['to_running_max_s']:.1f} s"),
        row(f"peak in flight (limit {args.in_flight})", lambda r: str(r["max_in_flight_seen"])),
        row(f"most submits in 1 s (burst {args.burst} + {args.rate:g}/s)", lambda r: str(r["max_submits_1s"])),
        row("429s from the sandbox", lambda r: str(r["rate_limited"])),
        row("status + result calls / job", lambda r: f"{r['poll_calls_per_job']:.1f}"),
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
        f"--latency-scale {args.latency_scale:g} --render-scale {args.render_scale:g} --stage {args.stage}"
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
    for one in (r for r in rounds if r["workers"] == 1):
        for more in (r for r in rounds if r["workers"] > 1):
            print(
                f"\nspeed-up, round {more['round']} ({_workers(more)}) against round {one['round']} "
                f"(1 worker): {one['wall_s'] / more['wall_s']:.2f}× on the wall time, "
                f"{one['tail_after_last_charge_s'] / more['tail_after_last_charge_s']:.2f}× after the last charge"
            )
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
    parser.add_argument(
        "--stage",
        choices=("generation", "cpu"),
        default="generation",
        help="cpu: the CPU-bound stage on its own (near-instant generation from the render cache, "
        "crossfaded masters re-encoded, worker i pinned to core i with taskset); its defaults: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in CPU_STAGE.items()),
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    cli = parser.parse_args()
    if cli.stage == "cpu":  # the stage's defaults, where the command line left the general ones
        for key, value in CPU_STAGE.items():
            if getattr(cli, key) == parser.get_default(key):
                setattr(cli, key, value)
    if not 1 <= cli.segments <= len(SHOT_SECONDS):
        parser.error(f"--segments must be 1..{len(SHOT_SECONDS)}")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main(cli)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
