"""Benchmark: does klingflow's own code block the event loop during a render?

The event loop that runs the engine also polls the provider and (under Prefect) renews the
flow's leases; a callback that holds it for long — a synchronous job-store call waiting for
SQLite's write lock, a file hashed on the loop — delays all of them. This script renders a
40-request script (drafts only: a 4-shot chained narrative and 6 independent shots, × 4
variants) against the in-process sandbox (fast latency, tiny pictures), with the whole run —
open, preflight, rehearsal, draft pass, masters, report, close — under asyncio's debug mode with
``loop.slow_callback_duration = 0.1``. asyncio then logs "Executing <Handle …> took X seconds"
for every callback that held the loop longer; this script captures those records from the
``asyncio`` logger (they are the count and the durations reported) and attributes each one:

- by the handle's repr, when it names a file of this checkout's ``pipeline/`` or ``flows/``;
- but a Task's repr names only its outermost coroutine (here, this script's ``render``), so a
  watchdog thread also samples the loop thread's stack every 10 ms while one callback has held
  it for more than 50 ms; the slow callback is attributed to the innermost frame of klingflow's
  code found in its samples (e.g. ``pipeline/store/jobs.py:… (_tx)`` for a store call).

With ``--contend-ms N`` another connection (a thread of this process, standing for another
worker or process writing the same SQLite store) holds the store's write lock for N ms out of
every 2N ms during the run, as a second run or worker sharing the store would.

"klingflow" rows are callbacks so attributed; everything else (the sandbox's client library,
asyncio itself, imports of third-party packages from library code) is counted apart. It is a
timing, so not a test: numbers vary with the machine's load (printed beside them).

Usage: ``.venv/bin/python scripts/bench_loop.py [--scale 0.01] [--render-scale 0.1]``; to
measure another checkout, run it with ``PYTHONPATH=/path/to/checkout`` (the pipeline package is
imported from there, and attribution follows it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

#: One request each: no two neighbouring shots fit in one 15 s request.
CHAINED = (10, 8, 12, 6)
INDEPENDENT = (15, 10, 9, 14, 7, 11)
VARIANTS = 4
SLOW_S = 0.1
MESSAGE = re.compile(r"^Executing (?P<handle>.*) took (?P<seconds>[0-9.]+) seconds$", re.DOTALL)
FRAME = re.compile(r"(?P<file>/[^\s:<>()]+\.py):(?P<line>\d+)")


def write_script(path: Path) -> None:
    """The 40-request render script (drafts only, cut transitions, no audio)."""
    lines = [
        "version: 1",
        "name: bench-loop",
        'defaults: {audio: false, style: "test card"}',
        "narratives:",
        "  - id: chain",
        "    continuity: chain",
        "    shots:",
        *(f'      - {{duration: {d}, action: "shot {i} of the chain"}}' for i, d in enumerate(CHAINED)),
        "  - id: spots",
        "    continuity: independent",
        "    shots:",
        *(f'      - {{duration: {d}, action: "spot {i}"}}' for i, d in enumerate(INDEPENDENT)),
        "variants:",
        "  - id: v1",
        *(f"  - id: v{n}\n    overrides: {{seed: {n}}}" for n in range(2, VARIANTS + 1)),
        "budget:",
        "  limit_usd: 40.00",
        "  draft_tier: standard",
        "  final_tier: pro",
        "  finals: 0",
        "  select: auto",
    ]
    path.write_text("\n".join(lines) + "\n")


def is_ours(file: str, root: Path) -> bool:
    """A source file of klingflow's code in the measured checkout."""
    path = Path(file)
    return path.is_relative_to(root / "pipeline") or path.is_relative_to(root / "flows")


@dataclass
class Slow:
    """One slow callback as asyncio reported it, with stack samples taken while it ran."""

    seconds: float
    handle: str
    samples: list[str] = field(default_factory=list)

    def source(self, root: Path) -> str | None:
        """Where in klingflow's code the loop was held, or None if it was not klingflow's."""
        ours = [where for where in self.samples if not where.startswith("~")]
        if ours:
            return Counter(ours).most_common(1)[0][0]
        for match in FRAME.finditer(self.handle):
            if is_ours(match["file"], root):
                name = re.search(r"coro=<([\w.]+)\(\)", self.handle) or re.search(
                    r"<Handle ([\w.]+)\(", self.handle
                )
                where = f"{Path(match['file']).relative_to(root)}:{match['line']}"
                return f"{where} ({name.group(1)})" if name else where
        return None


class Watchdog:
    """Samples the loop thread's stack while a callback holds the loop (see the docstring)."""

    def __init__(self, root: Path, after_s: float = 0.05, every_s: float = 0.01) -> None:
        self.root = root
        self.after_s = after_s
        self.every_s = every_s
        self.started: float | None = None
        self.samples: list[str] = []
        self.thread_id = threading.get_ident()
        self.stop = threading.Event()
        self._original = asyncio.events.Handle._run

    def install(self) -> None:
        """Time every callback (Handle._run) and start the sampling thread."""
        watchdog, original = self, self._original

        def timed_run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != watchdog.thread_id:
                # Another thread's loop (the in-process sandbox's server): not measured.
                original(handle)
                return
            watchdog.samples = []
            watchdog.started = time.perf_counter()
            try:
                original(handle)
            finally:
                watchdog.started = None

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        threading.Thread(target=self._sample, daemon=True, name="bench-watchdog").start()

    def uninstall(self) -> None:
        """Undo :meth:`install`."""
        self.stop.set()
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]

    def _where(self, frame: FrameType | None) -> str | None:
        # Innermost klingflow frame: a library call (sqlite3, hashlib) is charged to its caller.
        # Without one, the innermost frame, marked "~" (shown by --show, never attributed).
        innermost = frame
        while frame is not None:
            if is_ours(frame.f_code.co_filename, self.root):
                return f"{Path(frame.f_code.co_filename).relative_to(self.root)}:{frame.f_lineno} ({frame.f_code.co_name})"
            frame = frame.f_back
        if innermost is None:
            return None
        return f"~{innermost.f_code.co_filename}:{innermost.f_lineno} ({innermost.f_code.co_name})"

    def _sample(self) -> None:
        while not self.stop.wait(self.every_s):
            started = self.started
            if started is None or time.perf_counter() - started < self.after_s:
                continue
            where = self._where(sys._current_frames().get(self.thread_id))
            if where is not None and self.started == started:
                self.samples.append(where)


class Capture(logging.Handler):
    """Keeps asyncio's "Executing … took …" records, with the watchdog's samples of each."""

    def __init__(self, watchdog: Watchdog) -> None:
        super().__init__(logging.WARNING)
        self.watchdog = watchdog
        self.slow: list[Slow] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = MESSAGE.match(record.getMessage())
        if match:
            # Logged right after the slow callback returned: the samples are still its own.
            self.slow.append(Slow(float(match["seconds"]), match["handle"], list(self.watchdog.samples)))


def contend(db: Path, hold_s: float, stop: threading.Event) -> None:
    """Hold ``db``'s write lock for ``hold_s`` out of every ``2 * hold_s`` until ``stop``."""
    while not db.exists():
        if stop.wait(0.05):
            return
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    try:
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            time.sleep(hold_s)
            conn.execute("COMMIT")
            stop.wait(hold_s)
    finally:
        conn.close()


async def render(script: Path, runs_dir: Path, scale: float, render_scale: float) -> dict[str, Any]:
    """One whole run of ``script`` (no Prefect), the loop in debug mode."""
    asyncio.get_running_loop().slow_callback_duration = SLOW_S
    # Imported before the loop started (see main), as the CLI imports them before its loop.
    from pipeline.planning.plan import build_plan
    from pipeline.render.session import open_run
    from pipeline.render.settings import RunSettings
    from pipeline.script.loader import load_script

    loaded = load_script(str(script))
    plan = build_plan(loaded.script)
    settings = RunSettings(
        runs_dir=runs_dir,
        sandbox_latency_scale=scale,
        sandbox_render_scale=render_scale,
        max_in_flight=16,
        submit_rate_per_s=50.0,
        submit_burst=16,
    )
    started = time.monotonic()
    async with open_run(loaded, plan, run_id="bench-loop", settings=settings, provider="sandbox") as session:
        result = await session.run.execute()
    return {
        "requests": len(plan.requests),
        "clips": sum(1 for j in result.jobs if j.ok),
        "masters": sum(1 for m in result.masters if m.delivered),
        "wall_s": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.01, help="sandbox latency multiplier")
    parser.add_argument("--render-scale", type=float, default=0.1, help="sandbox picture size multiplier")
    parser.add_argument("--label", default="", help="a name for this measurement (e.g. before/after)")
    parser.add_argument("--contend-ms", type=float, default=0, help="another writer holds the store lock")
    parser.add_argument("--show", action="store_true", help="list every slow callback's handle")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    import pipeline
    import pipeline.planning.plan
    import pipeline.render.session
    import pipeline.render.settings
    import pipeline.script.loader

    root = Path(pipeline.__file__).resolve().parent.parent
    watchdog = Watchdog(root)
    capture = Capture(watchdog)
    logging.getLogger("asyncio").addHandler(capture)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    load_before = os.getloadavg()
    watchdog.install()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
            script = Path(tmp) / "bench-loop.yaml"
            write_script(script)
            stop = threading.Event()
            if args.contend_ms:
                db = Path(tmp) / "runs" / "bench-loop" / "jobs.db"
                threading.Thread(target=contend, args=(db, args.contend_ms / 1000, stop), daemon=True).start()
            try:
                outcome = asyncio.run(
                    render(script, Path(tmp) / "runs", args.scale, args.render_scale), debug=True
                )
            finally:
                stop.set()
    finally:
        watchdog.uninstall()
    load_after = os.getloadavg()

    ours: dict[str, list[float]] = defaultdict(list)
    others: list[float] = []
    for slow in capture.slow:
        source = slow.source(root)
        if source is None:
            others.append(slow.seconds)
        else:
            ours[source].append(slow.seconds)

    title = f" ({args.label})" if args.label else ""
    print(f"## Slow callbacks (> {SLOW_S} s) of a {outcome['requests']}-request render{title}\n")
    print(f"- code: `{root}`; Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"- load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"- load average (1/5/15 min) after: {' '.join(f'{x:.2f}' for x in load_after)}")
    print(
        f"- {outcome['clips']}/{outcome['requests']} clips, {outcome['masters']} masters, "
        f"{outcome['wall_s']:.1f} s wall; sandbox latency ×{args.scale}, pictures ×{args.render_scale}"
    )
    if args.contend_ms:
        print(
            f"- another writer held the store's lock {args.contend_ms:.0f} ms of every {2 * args.contend_ms:.0f} ms"
        )
    print()
    print("| source (klingflow) | slow callbacks | total s | max s |")
    print("|---|---:|---:|---:|")
    for source, times in sorted(ours.items(), key=lambda kv: -sum(kv[1])):
        print(f"| `{source}` | {len(times)} | {sum(times):.3f} | {max(times):.3f} |")
    total = [t for times in ours.values() for t in times]
    print(
        f"| **all klingflow** | **{len(total)}** | **{sum(total):.3f}** | **{max(total, default=0):.3f}** |"
    )
    print(
        f"| other code (libraries, asyncio) | {len(others)} | {sum(others):.3f} | {max(others, default=0):.3f} |"
    )
    if args.show:
        print("\nEvery slow callback, as asyncio named it:\n")
        for slow in capture.slow:
            print(f"- {slow.seconds:.3f} s: `{' '.join(slow.handle.split())[:300]}`")
            for where, count in Counter(slow.samples).most_common(5):
                print(f"  - sampled {count}× at `{where}`")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
