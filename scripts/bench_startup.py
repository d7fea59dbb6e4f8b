"""Benchmark: ``klingflow run`` on a one-shot script, from invocation to the first submit.

A sandbox process (``klingflow sandbox serve``) answers the runs; its request log
(``GET /v1/sandbox/requests``: ``received_at`` of each submit, wall clock) gives the moment the
first submit arrived, against the wall clock just before the command was started. Each run is a
fresh process with its own run id (nothing to resume) and its own seed (no clip to reuse from an
earlier run), and no Prefect server configured, so it starts Prefect's temporary server as a
user's ``klingflow run`` does.

Scenarios, each with a Prefect home (``PREFECT_HOME``) of its own:

- **after set-up**: a fresh home prepared by ``scripts/setup.sh --prefect-home``, then ``--runs``
  runs: the first run after set-up against the later ones;
- **fresh home** (``--fresh``): a home nobody prepared, to show what set-up saves.

Also measured: ``klingflow validate`` and ``klingflow plan`` on the same script (wall time, and
whether they imported Prefect or SQLAlchemy). Every number comes with the load average
(``os.getloadavg()``) before and after: the machine is shared, and the time to the first
submit follows its load.

With ``--before DIR`` (the committed code, e.g. ``git archive HEAD | tar -x -C DIR``), a run of
that code follows each later run of this tree, on the same prepared home and the same load.

Usage: ``.venv/bin/python scripts/bench_startup.py [--runs 4] [--fresh] [--before DIR] [--json PATH]``
(~1–2 min).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.stack.children import console_script
from pipeline.stack.sandbox import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """version: 1
name: startup
provider: sandbox
defaults: {aspect_ratio: '16:9', audio: false, style: 'studio product shot', seed: SEED}
narratives:
  - id: spot
    continuity: independent
    shots:
      - {duration: 5, action: 'a bottle turns on a plinth'}
budget: {limit_usd: 100, draft_tier: standard, final_tier: pro, finals: 0}
output: {loudness_lufs: null, subtitles: false, archive: 'ARCHIVE'}
"""
#: Run in a fresh interpreter: which heavy packages a command imported.
PROBE = (
    "import sys; from pipeline.cli import main; code = main(sys.argv[1:]); "
    "print('MODULES', 'prefect' in sys.modules, 'sqlalchemy' in sys.modules, file=sys.stderr); "
    "raise SystemExit(code)"
)


def load() -> str:
    """The 1/5/15-minute load averages, as text."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def write_script(work: Path, seed: int, *, new_shape: bool = False) -> Path:
    """The one-shot script, with ``seed`` (a clip no earlier run rendered); ``new_shape``: its
    shot 4 s long instead of 5 s, a master no earlier run rehearsed."""
    script = work / f"startup-{seed}.yaml"
    text = SCRIPT.replace("ARCHIVE", str(work / "archive")).replace("SEED", str(seed))
    if new_shape:
        text = text.replace("{duration: 5,", "{duration: 4,")
    script.write_text(text, encoding="utf-8")
    return script


def run_once(
    work: Path,
    sandbox: SandboxProcess,
    home: Path,
    index: int,
    code: str | None = None,
    *,
    new_shape: bool = False,
) -> dict[str, Any]:
    """One ``klingflow run``: seconds to its first submit at the sandbox, and in all; CPU seconds
    of its whole process tree (Prefect's server included). ``code``: a source tree to run instead
    of this one (``PYTHONPATH``), e.g. the committed code, for a before/after under one load.
    ``new_shape``: a script whose master no earlier run rehearsed (see :func:`write_script`)."""
    script = write_script(work, index, new_shape=new_shape)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "KLINGFLOW_SANDBOX_URL": sandbox.base_url,
        "KLINGFLOW_RUNS_DIR": str(work / "runs"),
    }
    if code is not None:
        env["PYTHONPATH"] = code
    for name in ("PREFECT_API_URL", "RUNCOMFY_TOKEN", "KLINGFLOW_STORE_URL"):
        env.pop(name, None)
    seen = len(sandbox.requests())
    before = load()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.run(
        [
            console_script("klingflow"),
            "run",
            str(script),
            "--provider",
            "sandbox",
            "--run-id",
            f"startup-{index}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"klingflow run exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    new = sandbox.requests()[seen:]
    if not new:
        raise SystemExit(f"klingflow run submitted nothing to the sandbox:\n{proc.stderr[-3000:]}")
    first = min(datetime.fromisoformat(e["received_at"]).timestamp() for e in new)
    return {
        "code": (code or "this tree") + (", new shape" if new_shape else ""),
        "first_submit_s": first - started,
        "wall_s": wall,
        "cpu_s": cpu,
        "load_before": before,
        "load_after": load(),
    }


def probe(command: str, script: Path, home: Path) -> dict[str, Any]:
    """``klingflow COMMAND SCRIPT`` in a fresh interpreter: wall time and heavy imports."""
    env = {**os.environ, "PREFECT_HOME": str(home)}
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, command, str(script)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - started
    line = next((x for x in proc.stderr.splitlines() if x.startswith("MODULES")), "MODULES ? ?")
    _, prefect, sqlalchemy = line.split()
    return {
        "command": command,
        "exit": proc.returncode,
        "wall_s": wall,
        "prefect": prefect,
        "sqlalchemy": sqlalchemy,
    }


def scenario(
    name: str,
    work: Path,
    sandbox: SandboxProcess,
    runs: int,
    *,
    set_up: bool,
    first: int,
    compare: str | None = None,
) -> dict[str, Any]:
    """``runs`` runs on a fresh Prefect home (prepared by set-up first, or not); with
    ``compare``, after the first run each run of this tree is followed by one of that tree."""
    home = work / f"home-{name}"
    home.mkdir()
    setup_s = None
    if set_up:
        started = time.time()
        subprocess.run(
            [str(ROOT / "scripts" / "setup.sh"), "--prefect-home"],
            env={**os.environ, "PREFECT_HOME": str(home)},
            check=True,
        )
        setup_s = time.time() - started
    found = []
    for i in range(runs):
        found.append(run_once(work, sandbox, home, first + 2 * i))
        if compare is not None and i > 0:
            found.append(run_once(work, sandbox, home, first + 2 * i + 1, compare))
    if set_up and runs > 1:
        # The control: a later run whose script's master was never rehearsed, as the first run's
        # was not (a run checks its masters can be made before it spends: ~1 s of ffmpeg, once
        # per shape and settings). What the first run pays beyond it is set-up's to prepare.
        found.append(run_once(work, sandbox, home, first + 2 * runs, new_shape=True))
    for i, r in enumerate(found):
        print(
            f"{name} run {i + 1} ({r['code']}): first submit {r['first_submit_s']:.2f} s, whole run "
            f"{r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s (load {r['load_before']} → {r['load_after']})",
            flush=True,
        )
    return {"scenario": name, "setup_s": setup_s, "runs": found}


def main(cli: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="kf-bench-startup-"))
    try:
        script = write_script(work, 0)
        results: dict[str, Any] = {"load_start": load()}
        with SandboxProcess.serve(
            work / "sandbox", latency_scale=cli.latency_scale, render_scale=0.1
        ) as sandbox:
            scenarios = [
                scenario("after-setup", work, sandbox, cli.runs, set_up=True, first=1, compare=cli.before)
            ]
            if cli.fresh:
                scenarios.append(scenario("fresh-home", work, sandbox, 1, set_up=False, first=100))
        results["scenarios"] = scenarios
        results["probes"] = [probe(c, script, work / "home-after-setup") for c in ("validate", "plan")]
        results["load_end"] = load()
        for p in results["probes"]:
            print(
                f"klingflow {p['command']}: {p['wall_s']:.2f} s, prefect imported: {p['prefect']}, sqlalchemy imported: {p['sqlalchemy']}"
            )
        shaped = [r for r in scenarios[0]["runs"] if r["code"].endswith("new shape")]
        for r in shaped:
            print(
                f"this tree, a later run of a never-rehearsed shape: first submit {r['first_submit_s']:.2f} s"
            )
        for code in ("this tree", cli.before):
            later = [r["first_submit_s"] for r in scenarios[0]["runs"][1:] if r["code"] == code]
            if later:
                first = (
                    f"first run {scenarios[0]['runs'][0]['first_submit_s']:.2f} s; "
                    if code == "this tree"
                    else ""
                )
                print(
                    f"{code}, after set-up: {first}"
                    f"later runs median {statistics.median(later):.2f} s (min {min(later):.2f}, "
                    f"max {max(later):.2f}, {len(later)} runs); set-up took {scenarios[0]['setup_s']:.1f} s; "
                    f"load {results['load_start']} → {results['load_end']}"
                )
        if cli.json:
            Path(cli.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    finally:
        if not cli.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="runs after set-up (the first one counts apart)")
    parser.add_argument("--fresh", action="store_true", help="also one run on a home nobody prepared")
    parser.add_argument(
        "--before",
        default=None,
        help="a source tree (e.g. `git archive HEAD` unpacked) whose runs alternate with this tree's",
    )
    parser.add_argument("--latency-scale", type=float, default=0.02, help="sandbox latency multiplier")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    main(parser.parse_args())
