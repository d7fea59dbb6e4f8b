"""``klingflow validate`` and ``klingflow plan``: exit codes 0/65/66/3 and the JSON plan's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_BUDGET, EXIT_DATAERR, EXIT_NOINPUT


def _bulk_ab(repo_root: Path) -> str:
    return (repo_root / "configs/bulk-ab.yaml").read_text(encoding="utf-8")


def test_validate_ok_prints_ok(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(repo_root / "configs/bulk-ab.yaml")]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_validate_missing_file_exits_66(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "absent.yaml")]) == EXIT_NOINPUT
    assert "absent.yaml" in capsys.readouterr().err


def test_validate_invalid_script_exits_65_and_names_the_line(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    text = _bulk_ab(repo_root).replace("version: 1", "version: 99", 1)
    assert text != _bulk_ab(repo_root)
    bad.write_text(text, encoding="utf-8")
    assert main(["validate", str(bad)]) == EXIT_DATAERR
    err = capsys.readouterr().err
    assert f"{bad}:" in err  # FILE:LINE: field.path: message
    assert "version" in err
    assert "problem(s)" in err


def test_plan_of_invalid_script_exits_65(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_bulk_ab(repo_root).replace("version: 1", "version: 99", 1), encoding="utf-8")
    assert main(["plan", str(bad), "--json"]) == EXIT_DATAERR
    assert capsys.readouterr().out == ""  # nothing half-printed on stdout


def test_plan_over_budget_exits_3(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Twelve 10 s drafts cost $10.08: even the cheapest plan cannot fit $0.50.
    poor = tmp_path / "poor.yaml"
    text = _bulk_ab(repo_root).replace("limit_usd: 16.00", "limit_usd: 0.50", 1)
    assert text != _bulk_ab(repo_root)
    poor.write_text(text, encoding="utf-8")
    assert main(["plan", str(poor)]) == EXIT_BUDGET
    assert main(["plan", str(poor), "--json"]) == EXIT_BUDGET
    capsys.readouterr()


def test_plan_json_shape(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(repo_root / "configs/bulk-ab.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["script"] == "bulk-ab"
    assert plan["budget_usd"] == 16.0
    assert plan["total_usd"] <= plan["budget_usd"]
    assert plan["remaining_usd"] == pytest.approx(plan["budget_usd"] - plan["total_usd"])
    assert plan["total_usd"] == pytest.approx(plan["draft_usd"] + plan["final_usd"])
    # Six finals asked for, three fit (the example's documented degradation).
    assert plan["finals"]["requested"] == 6
    assert plan["finals"]["planned"] == 3
    assert plan["degraded"]
    (narrative,) = plan["narratives"]
    assert narrative["id"] == "bottle"
    assert narrative["master_seconds"] == 10.0
    drafts = [r for r in plan["requests"] if r["pass"] == "draft"]
    finals = [r for r in plan["requests"] if r["pass"] == "final"]
    assert len(drafts) == 12
    assert len(finals) == 3
    assert sum(r["cost_usd"] for r in plan["requests"]) == pytest.approx(plan["total_usd"])
    candidates = plan["candidate_finals"]
    assert candidates and all(c["pass"] == "final" for c in candidates)
    assert {"narrative", "variant", "segment", "tier", "duration", "cost_usd", "prompt"} <= set(candidates[0])


def test_plan_json_of_long_form_has_master_seconds_below_shot_seconds(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A chained long-form narrative is stitched with crossfades: its master is not longer than its shots.
    assert main(["plan", str(repo_root / "configs/long-form-story.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    for n in plan["narratives"]:
        assert 0 < n["master_seconds"] <= n["seconds"]
        assert len(n["segments"]) >= 1


def test_plan_compiles_for_the_provider_asked_and_says_what_it_drops(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = str(repo_root / "configs/long-form-story.yaml")
    assert main(["plan", script, "--provider", "runcomfy"]) == 0
    assert (
        "compiled for runcomfy: drops elements: description only; storyboard: prose"
        in capsys.readouterr().out
    )
    assert main(["plan", script, "--provider", "fal"]) == 0
    assert "compiled for fal: drops nothing" in capsys.readouterr().out
