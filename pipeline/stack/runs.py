"""``klingflow run`` as a child process, and how far it got: for tests that stop, kill and resume.

Example::

    proc = start_run(script, "crash", cwd=tmp, env=env, log=tmp / "run.log", provider="sandbox")
    wait_for_submits(tmp / ".klingflow/runs/crash/jobs.db", 3, proc)
    proc.send_signal(signal.SIGTERM)
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def run_command(
    script: Path, run_id: str, *, provider: str = "sandbox", extra: tuple[str, ...] = ()
) -> list[str]:
    """The argument list of ``klingflow run SCRIPT --provider P --run-id ID`` (this interpreter)."""
    return [
        sys.executable, "-m", "pipeline.cli", "run", str(script),
        "--provider", provider, "--run-id", run_id, *extra,
    ]  # fmt: skip


def start_run(
    script: Path,
    run_id: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    provider: str = "sandbox",
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the run with stdout and stderr into ``log``; ``new_session`` gives it its own process
    group (so a test can signal the run and its children as a terminal's Ctrl-C would)."""
    with log.open("w") as out:
        return subprocess.Popen(
            run_command(script, run_id, provider=provider),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def submitted(db: Path) -> int:
    """How many jobs of the run's SQLite store have a request id (0 while there is no store)."""
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("select count(*) from jobs where request_id is not null").fetchone()[0])
    except sqlite3.Error:
        return 0


def wait_for_submits(db: Path, count: int, proc: subprocess.Popen[bytes], *, timeout_s: float = 180) -> int:
    """Wait until ``count`` requests are out, the process ended, or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while (seen := submitted(db)) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen
