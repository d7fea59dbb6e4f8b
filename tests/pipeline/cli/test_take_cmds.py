"""``klingflow reroll``/``takes``/``use`` as a user types them: bad flags are usage errors, a run
that does not exist is named. (Rerolls that buy: tests/pipeline/render/test_takes.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main

SEGMENT = ["--narrative", "n", "--variant", "a", "--segment", "0"]


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))


def test_a_pass_other_than_draft_or_final_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["use", "r1", *SEGMENT, "--pass", "first", "--take", "1"]) == 64
    assert "--pass is draft or final" in capsys.readouterr().err


def test_both_following_choices_at_once_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["reroll", "r1", *SEGMENT, "--pass", "draft", "--keep-following", "--rebuy-following"]
    assert main(args) == 64
    assert "exclude each other" in capsys.readouterr().err


def test_a_run_without_masters_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["use", "r1", *SEGMENT, "--pass", "draft", "--take", "1"]) == 66
    assert str(tmp_path / "runs" / "r1") in capsys.readouterr().err
    assert not (tmp_path / "runs" / "r1" / "takes.json").exists()


def test_takes_of_a_run_never_rerolled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["takes", "r1"]) == 0
    assert "has no rerolled segment" in capsys.readouterr().out
