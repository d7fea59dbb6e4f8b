"""Benchmark: how long a run goes on after its last clip arrived (masters while generation runs).

Renders the 40-request script of ``scripts/bench_loop.py`` (4 variants × 10 segments, drafts
only: 8 masters) against the in-process sandbox, without Prefect, and reports:

- *last clip*: seconds from the start of the pass to the last job's ``done`` event (its charge
  is recorded just before);
- *tail*: seconds from that event to the end of the run (masters, QC, contact sheets, report) —
  the time nothing generates;
- *makespan*: the whole run; *peak RSS*: the largest sum of RSS over this process and all its
  descendants (ffmpeg, ffprobe), sampled every 50 ms from ``/proc``.

To compare with another checkout (e.g. ``git archive HEAD pipeline | tar -x -C /tmp/head``), run
this script with ``--code /tmp/head``: the ``pipeline`` package is imported from there. Prints one
Markdown row; the load average is printed beside it (the machine is shared).

Usage: ``.venv/bin/python scripts/bench_masters_tail.py [--code DIR] [--scale 0.01] [--render-scale 0.25]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss_bytes(root_pid: int) -> int:
    """RSS of ``root_pid`` and all its descendants, from /proc (processes may vanish meanwhile)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(statm.split()[1]) * _PAGE
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(pid, 0) for pid in tree)


class PeakSampler(threading.Thread):
    """Samples the process tree's RSS until stopped; keeps the peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))


async def render(script: Path, runs_dir: Path, scale: float, render_scale: float) -> dict[str, Any]:
    """One whole run of ``script``; the time of every job's ``done`` event."""
    from pipeline.planning.plan import build_plan
    from pipeline.render.progress import RunHooks
    from pipeline.render.session import open_run
    from pipeline.render.settings import RunSettings
    from pipeline.script.loader import load_script

    # The client limits of bench_loop.py: the provider, not the client, is what bounds the pass.
    limits: dict[str, Any] = {"max_in_flight": 16, "submit_rate_per_s": 50.0, "submit_burst": 16}
    settings = RunSettings(
        runs_dir=runs_dir, sandbox_latency_scale=scale, sandbox_render_scale=render_scale, **limits
    )
    loaded = load_script(str(script))
    plan = build_plan(loaded.script)
    done: list[float] = []

    def on_event(event: str, request: object, detail: str) -> None:
        if event == "done":
            done.append(time.monotonic())

    started = time.monotonic()
    hooks = RunHooks(on_event=on_event)
    async with open_run(
        loaded, plan, run_id="bench-tail", settings=settings, provider="sandbox", hooks=hooks
    ) as session:
        result = await session.run.execute()
    ended = time.monotonic()
    last = max(done) if done else ended
    return {
        "requests": len(plan.requests),
        "clips": sum(1 for j in result.jobs if j.ok),
        "masters": sum(1 for m in result.masters if m.delivered),
        "last_clip_s": last - started,
        "tail_s": ended - last,
        "makespan_s": ended - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose pipeline/ to measure")
    parser.add_argument("--scale", type=float, default=0.01, help="sandbox latency multiplier")
    parser.add_argument("--render-scale", type=float, default=0.25, help="sandbox picture size multiplier")
    parser.add_argument("--label", default="", help="a name for the row (e.g. before/after)")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(args.code))
    # The same 40-request script as bench_loop.py, loaded from its file (scripts are not a package).
    spec = importlib.util.spec_from_file_location("bench_loop", ROOT / "scripts" / "bench_loop.py")
    assert spec is not None
    assert spec.loader is not None
    bench_loop = importlib.util.module_from_spec(spec)
    sys.modules["bench_loop"] = bench_loop  # its dataclasses look their module up there
    spec.loader.exec_module(bench_loop)
    write_script = bench_loop.write_script

    load = os.getloadavg()
    sampler = PeakSampler()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="bench-tail-") as tmp:
        script = Path(tmp) / "bench-tail.yaml"
        write_script(script)
        row = asyncio.run(render(script, Path(tmp) / "runs", args.scale, args.render_scale))
    sampler.stop.set()
    sampler.join()
    print(
        f"| {args.label or args.code} | {row['clips']}/{row['requests']} clips, {row['masters']} masters "
        f"| {row['last_clip_s']:.1f} s | {row['tail_s']:.1f} s | {row['makespan_s']:.1f} s "
        f"| {sampler.peak / 2**20:.0f} MiB | {load[0]:.2f} → {os.getloadavg()[0]:.2f} |"
    )


if __name__ == "__main__":
    main()
