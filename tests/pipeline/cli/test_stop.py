"""Stopping a local run: SIGTERM (``timeout``, ``docker stop``) and ``klingflow cancel`` do what
Ctrl-C does — no new submit, queued requests cancelled, exit 130 — and the state says how."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.stack.runs import start_run, wait_for_submits

from .test_exit_codes import _env, _tiny_script, klingflow, sandbox

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stop-prefect")


def _run_status(db: Path, run_id: str) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("select status from runs where run_id = ?", (run_id,)).fetchone()[0])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "cancel"])
def test_a_stopped_run_cancels_what_is_queued_and_exits_130(
    how: str, tmp_path: Path, prefect_home: Path
) -> None:
    # Six drafts, two rendering at once and slowly: when the stop lands, some are queued.
    script = _tiny_script(tmp_path, variants=6)
    run_id = f"stop-{how.lower()}"
    with sandbox(latency_scale=0.5, slots=2) as handle:
        env = _env(
            tmp_path,
            prefect_home,
            KLINGFLOW_SANDBOX_URL=handle.base_url,
            KLINGFLOW_SANDBOX_LATENCY_SCALE="0.5",
            KLINGFLOW_SUBMIT_RATE_PER_S="0.5",
            KLINGFLOW_SUBMIT_BURST="3",
        )
        proc = start_run(script, run_id, cwd=tmp_path, env=env, log=tmp_path / "run.log")
        db = tmp_path / "runs" / run_id / "jobs.db"
        wait_for_submits(db, 3, proc)
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)  # only the process, as docker stop / timeout do
            code = proc.wait(60)
        else:
            done = klingflow(["cancel", run_id], env, tmp_path, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"process {proc.pid}" in done.stdout and "stopped" in done.stdout
            code = proc.wait(60)
        ledger = httpx.get(f"{handle.base_url}/sandbox/ledger", timeout=5).json()
        entries = ledger if isinstance(ledger, list) else ledger["entries"]
        time.sleep(0.5)
        later = httpx.get(f"{handle.base_url}/sandbox/ledger", timeout=5).json()
    said = (tmp_path / "run.log").read_text()
    assert code == 130, said[-3000:]
    assert "Traceback" not in said and "TerminationSignal" not in said
    assert ("cancelled (klingflow cancel):" if how == "cancel" else "interrupted:") in said
    assert _run_status(db, run_id) == ("cancelled" if how == "cancel" else "interrupted")
    # Nothing bought after the stop, and what was still queued was cancelled, never billed.
    assert len(entries) == len(later if isinstance(later, list) else later["entries"])
    assert any(e["status"] in ("cancelled", "canceled") for e in entries)
    with sqlite3.connect(db) as conn:
        cancelled = {r[0] for r in conn.execute("select request_id from jobs where status = 'cancelled'")}
        known = {r[0] for r in conn.execute("select request_id from jobs where request_id is not null")}
    assert {e["request_id"] for e in entries} <= known  # every request bought is in the job store
    assert cancelled and all(not e["charged"] for e in entries if e["request_id"] in cancelled)


def test_cancel_of_an_unknown_run_says_so(tmp_path: Path, prefect_home: Path) -> None:
    done = klingflow(["cancel", "no-such-run"], _env(tmp_path, prefect_home), tmp_path, timeout=120)
    assert done.returncode == 66 and "no run 'no-such-run'" in done.stderr
    assert not (tmp_path / "runs" / "no-such-run").exists()


def test_sigterm_before_the_flow_starts_exits_130(tmp_path: Path, prefect_home: Path) -> None:
    """Still starting Prefect: SIGTERM ends it all the same, with nothing bought."""
    script = _tiny_script(tmp_path)
    env = _env(tmp_path, prefect_home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(script), "--provider", "sandbox"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # "run ID: N requests planned" comes just before Prefect starts
        if "requests planned" in line:
            break
    os.kill(proc.pid, signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert "Traceback" not in out
