"""``klingflow run`` as a child process: its command line and the count of submitted requests."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from pipeline.stack.runs import run_command, submitted


def test_run_command_runs_the_cli_with_this_interpreter() -> None:
    cmd = run_command(Path("s.yaml"), "r1", provider="fake", extra=("--select", "all"))
    assert cmd == [
        sys.executable, "-m", "pipeline.cli", "run", "s.yaml",
        "--provider", "fake", "--run-id", "r1", "--select", "all",
    ]  # fmt: skip
    assert run_command(Path("s.yaml"), "r1")[5:7] == ["--provider", "sandbox"]


def test_submitted_is_zero_without_a_store_or_with_a_broken_one(tmp_path: Path) -> None:
    assert submitted(tmp_path / "missing.db") == 0
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    assert submitted(garbage) == 0
    no_table = tmp_path / "empty.db"
    sqlite3.connect(no_table).close()
    assert submitted(no_table) == 0


def test_submitted_counts_jobs_with_a_request_id(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table jobs (key text primary key, request_id text)")
        conn.executemany(
            "insert into jobs values (?, ?)", [("a", "req-1"), ("b", None), ("c", "req-2"), ("d", None)]
        )
    conn.close()
    assert submitted(db) == 2
