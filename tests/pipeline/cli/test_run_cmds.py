"""``klingflow run`` refuses bad input before Prefect starts; ``cancel`` reads the store."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_BUDGET, EXIT_CONFIG, EXIT_DATAERR, EXIT_NOINPUT
from pipeline.store.jobs import JobStore


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KLINGFLOW_STORE_URL", raising=False)
    return tmp_path / "runs"


def test_run_refuses_an_invalid_script_and_a_short_budget(
    tmp_path: Path, runs_dir: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", str(repo_root / "tests/pipeline/script/broken/06-duration-zero.yaml")]) == EXIT_DATAERR
    )
    poor = tmp_path / "poor.yaml"
    poor.write_text(
        "version: 1\nname: poor\nnarratives:\n  - id: a\n    shots: [{duration: 10, action: go}]\nbudget: {limit_usd: 1.00}\n"
    )
    assert main(["run", str(poor)]) == EXIT_BUDGET
    assert "falls short by" in capsys.readouterr().err
    assert not runs_dir.exists()  # nothing was started


def test_cancel_without_a_reachable_sandbox_says_why(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KLINGFLOW_SANDBOX_URL", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    monkeypatch.setenv("KLINGFLOW_PROVIDER_TOKEN_FILE", str(tmp_path / "none.json"))
    store = JobStore.in_directory(runs_dir / "r2")
    store.ensure_run("r2", script="demo", limit=Decimal("5"))
    key = store.upsert_job(
        run_id="r2", narrative="n", variant="a", pass_="draft", segment=0, body={"p": 1}
    ).key
    store.begin_submit(key, Decimal("0.42"))
    store.mark_submitted(key, "req-9")
    store.close()
    assert main(["cancel", "r2"]) == EXIT_CONFIG
    assert "KLINGFLOW_SANDBOX_URL" in capsys.readouterr().err
    assert main(["cancel", "nope"]) == EXIT_NOINPUT  # as the README's exit codes say
