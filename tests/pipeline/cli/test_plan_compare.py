"""``klingflow plan --compare``: one row per real provider, its total and what it would drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli.plan_compare import REAL_PROVIDERS, compare, compare_to_dict
from pipeline.script.loader import load_script


def test_compare_prints_every_real_provider(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(repo_root / "configs/long-form-story.yaml"), "--compare"]) == 0
    out = capsys.readouterr().out
    rows = [
        line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in REAL_PROVIDERS
    ]
    assert rows == ["runcomfy", "fal", "kling"]
    assert "storyboard: prose" in out  # RunComfy takes one prose prompt
    assert "(assumed)" in out  # Kling's USD rates are not published


def test_compare_json_names_totals_and_drops(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(repo_root / "configs/long-form-story.yaml"), "--compare", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {p["provider"]: p for p in data["providers"]}
    assert list(by_name) == ["runcomfy", "fal", "kling"]
    assert all(isinstance(p["total_usd"], float) and p["fits"] for p in data["providers"])
    assert by_name["runcomfy"]["drops"] == ["elements: description only", "storyboard: prose"]
    assert "storyboard: prose" not in by_name["fal"]["drops"]
    # Kling sends element images by id on image-to-video, which every request here is.
    assert not any(d.startswith("elements") for d in by_name["kling"]["drops"])


def test_a_short_budget_still_gets_a_row_that_does_not_fit(repo_root: Path) -> None:
    script = load_script(repo_root / "configs/long-form-story.yaml").script
    poor = script.model_copy(update={"budget": script.budget.model_copy(update={"limit_usd": 1.0})})
    rows = compare_to_dict(compare(poor))["providers"]
    assert [r["fits"] for r in rows] == [False, False, False]
    assert all(r["total_usd"] > 1.0 for r in rows)


def test_a_tier_a_provider_does_not_sell_is_a_drop(repo_root: Path) -> None:
    script = load_script(repo_root / "configs/long-form-story.yaml").script
    k4 = script.model_copy(
        update={"budget": script.budget.model_copy(update={"final_tier": "4k", "limit_usd": 500})}
    )
    rows = {r.provider: r for r in compare(k4)}
    assert "tier 4k: not sold" in rows["fal"].drops and "tier 4k: not sold" not in rows["runcomfy"].drops


def test_a_prompt_over_a_providers_limit_gets_its_message_instead_of_a_total(tmp_path: Path) -> None:
    from pipeline.script.loader import parse_script

    long_action = "a storm " * 80
    text = f"""
version: 1
name: long-shot
narratives:
  - id: n
    shots:
      - {{duration: 4, action: "{long_action}"}}
      - {{duration: 4, action: "calm"}}
budget: {{limit_usd: 50}}
"""
    script = parse_script(text.encode(), file="s.yaml", base_dir=tmp_path).script
    rows = {r.provider: r for r in compare(script)}
    assert rows["kling"].total_usd is None and rows["kling"].error is not None
    assert "over kling's limit of 512" in rows["kling"].error
    assert rows["fal"].total_usd is not None and rows["fal"].error is None
