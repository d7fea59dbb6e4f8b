"""``klingflow status``: tables that cut no id when piped, ``--json``, 66 for an unknown run,
runs found under KLINGFLOW_RUNS_DIR and in the shared store."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_NOINPUT
from pipeline.store.jobs import JobStore

#: Longer than any column rich would fit into 80 columns.
LONG_ID = "lighthouse-keepers-weekly-campaign-0123456789abcdef"


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KLINGFLOW_STORE_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path / "runs"


def _submitted_run(store: JobStore, run_id: str, request_id: str) -> None:
    store.ensure_run(run_id, script="demo", limit=Decimal("5"))
    key = store.upsert_job(
        run_id=run_id, narrative="n", variant="a", pass_="draft", segment=0, body={"p": 1}
    ).key
    store.begin_submit(key, Decimal("0.42"))
    store.mark_submitted(key, request_id)


def test_status_lists_runs_and_jobs_with_full_ids_when_piped(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = JobStore.in_directory(runs_dir / LONG_ID)
    _submitted_run(store, LONG_ID, "req-" + "9" * 60)
    store.close()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert LONG_ID in out and "submitted 1" in out and "$0.42" in out and "…" not in out
    assert main(["status", LONG_ID]) == 0
    out = capsys.readouterr().out
    assert "req-" + "9" * 60 in out and "reserved $0.42" in out and "limit $5.00" in out


def test_status_json_parses(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = JobStore.in_directory(runs_dir / "r1")
    _submitted_run(store, "r1", "req-123")
    store.close()
    assert main(["status", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["runs_dir"] == str(runs_dir.resolve())
    (run,) = listed["runs"]
    assert run["run_id"] == "r1" and run["jobs"] == {"submitted": 1}
    assert run["reserved_usd"] == 0.42 and run["charged_usd"] == 0.0 and run["limit_usd"] == 5.0
    assert main(["status", "r1", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    (job,) = one["job_list"]
    assert job["request_id"] == "req-123" and job["status"] == "submitted" and job["pass"] == "draft"


def test_an_unknown_run_is_66_naming_where_it_looked(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs_dir.mkdir(parents=True)
    assert main(["status", "nope"]) == EXIT_NOINPUT
    assert f"no run 'nope' under {runs_dir.resolve()}" in capsys.readouterr().err


def test_status_looks_in_the_runs_dir_and_the_shared_store(
    runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    local = JobStore.in_directory(runs_dir / "local-run")
    _submitted_run(local, "local-run", "req-1")
    local.close()
    shared_url = f"sqlite:///{tmp_path / 'shared' / 'store.db'}"
    shared = JobStore.open(shared_url)
    _submitted_run(shared, "shared-run", "req-2")
    shared.close()
    monkeypatch.setenv("KLINGFLOW_STORE_URL", shared_url)
    assert main(["status", "--json"]) == 0
    found = {r["run_id"] for r in json.loads(capsys.readouterr().out)["runs"]}
    assert found == {"local-run", "shared-run"}
