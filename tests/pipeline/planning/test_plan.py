"""Plans of the example scripts obey the segmenting and money rules of the script format."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_BUDGET
from pipeline.planning.plan import build_plan, plan_to_dict
from pipeline.pricing import PRICE_PER_SECOND, Tier
from pipeline.script.loader import load_script, parse_script


def plan_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    assert main(["plan", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_example_plans_obey_the_rules(
    example_scripts: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for path in example_scripts:
        data = plan_json(path, capsys)
        script = load_script(path).script
        requests = data["requests"]
        assert requests, path
        for r in requests:
            assert set(r) >= {
                "narrative",
                "variant",
                "pass",
                "segment",
                "tier",
                "duration",
                "audio",
                "shots",
                "cost_usd",
                "prompt",
            }
            assert r["pass"] in {"draft", "final"}
            assert r["tier"] in {"standard", "pro", "4k"}
            assert isinstance(r["duration"], int) and 3 <= r["duration"] <= 15
            assert 1 <= r["shots"] <= 6
            assert len(r["prompt"]) <= 2500
            without, with_audio = PRICE_PER_SECOND[Tier(r["tier"])]
            exact = (with_audio if r["audio"] else without) * r["duration"]
            assert Decimal(str(r["cost_usd"])) == exact.quantize(Decimal("0.01"))
        total = sum(Decimal(str(r["cost_usd"])) for r in requests)
        assert Decimal(str(data["total_usd"])) == total  # costs add up to the cent
        assert data["total_usd"] <= data["budget_usd"] == script.budget.limit_usd
        assert Decimal(data["total_usd_exact"]) <= Decimal(str(data["budget_usd"]))
        # Per narrative, variant and pass, the segments cover the narrative's seconds in order.
        for narrative in script.narratives:
            seconds = sum(s.duration for s in narrative.shots)
            groups: dict[tuple[str, str], list[dict]] = {}  # type: ignore[type-arg]
            for r in requests:
                if r["narrative"] == narrative.id:
                    groups.setdefault((r["variant"], r["pass"]), []).append(r)
            for group in groups.values():
                assert [r["segment"] for r in group] == list(range(len(group)))
                trimmed = sum(r["trimmed_seconds"] for r in group)
                assert sum(r["duration"] for r in group) - trimmed == seconds


def test_weekly_campaign_reserves_two_auto_finals(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = plan_json(repo_root / "configs/weekly-campaign.yaml", capsys)
    finals = [r for r in data["requests"] if r["pass"] == "final"]
    assert {r["variant"] for r in finals} == {"a", "b"}
    assert all(r["provisional"] and r["audio"] and r["tier"] == "pro" for r in finals)
    drafts = [r for r in data["requests"] if r["pass"] == "draft"]
    assert {r["variant"] for r in drafts} == {"a", "b", "c"}
    assert not any(r["audio"] for r in drafts)  # draft_audio: false


def test_long_form_story_chains_segments(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(repo_root / "configs/long-form-story.yaml", capsys)
    drafts = [r for r in data["requests"] if r["pass"] == "draft"]
    assert data["narratives"][0]["seconds"] > 90
    assert drafts[0]["start_image"] == "assets/deck.png" and not drafts[0]["chained"]
    assert all(r["chained"] and r["start_image"] is None for r in drafts[1:])
    assert [r["end_image"] for r in drafts] == [None] * (len(drafts) - 1) + ["assets/harbor.png"]
    assert "in Spanish" in "".join(r["prompt"] for r in drafts)


def test_bulk_ab_is_degraded_to_fit(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(repo_root / "configs/bulk-ab.yaml", capsys)
    assert len({r["variant"] for r in data["requests"]}) >= 12
    assert data["degraded"] == ["finals reduced from 6 to 3 to fit the budget"]
    assert data["finals"]["variants"] == ["v01", "v02", "v03"]  # select: all promotes the first N


def test_plan_is_deterministic(example_scripts: list[Path]) -> None:
    for path in example_scripts:
        script = load_script(path).script
        assert plan_to_dict(build_plan(script)) == plan_to_dict(build_plan(script))


def test_short_budget_exits_3_before_spending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "poor.yaml"
    script.write_text(
        "version: 1\nname: poor\nnarratives:\n  - id: a\n    shots: [{duration: 10, action: go}]\n"
        "budget: {limit_usd: 1.00}\n"
    )
    assert main(["plan", str(script)]) == EXIT_BUDGET
    err = capsys.readouterr().err
    # drafts 10 s × 0.084 = 0.84, one standard final would be the draft again, so one pro final: 1.12.
    assert "the cheapest plan costs $1.96" in err and "falls short by $0.96" in err


def test_narrative_under_3_seconds_is_padded_and_the_trim_is_priced(tmp_path: Path) -> None:
    text = "version: 1\nname: tiny\nnarratives:\n  - id: a\n    shots: [{duration: 2, action: go}]\nbudget: {limit_usd: 5}\n"
    plan = build_plan(parse_script(text.encode(), file="s.yaml", base_dir=tmp_path).script)
    data = plan_to_dict(plan)
    assert [r["duration"] for r in data["requests"]] == [3, 3]
    assert data["trimmed_seconds"] == 2
    assert data["trimmed_usd"] == round(0.084 + 0.112, 2)


def test_draft_tier_none_plans_finals_only(tmp_path: Path) -> None:
    text = (
        "version: 1\nname: direct\nnarratives:\n  - id: a\n    shots: [{duration: 5, action: go}]\n"
        "budget: {limit_usd: 5, draft_tier: none, final_tier: 4k}\n"
    )
    plan = build_plan(parse_script(text.encode(), file="s.yaml", base_dir=tmp_path).script)
    assert [(r.pass_, r.tier, r.cost) for r in plan.requests] == [("final", Tier.K4, Decimal("2.10"))]


def test_plan_shows_each_masters_length(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # script-format.md: a crossfaded master lasts Σ shots − (segments − 1) × crossfade_seconds.
    data = plan_json(repo_root / "configs/long-form-story.yaml", capsys)
    (story,) = data["narratives"]
    assert story["seconds"] == 104 and len(story["segments"]) == 9
    assert story["master_seconds"] == 104 - 8 * 0.5
    assert main(["plan", str(repo_root / "configs/long-form-story.yaml")]) == 0
    assert "master   atlantic: 100 s (104 s of shots, 8 crossfades of 0.5 s)" in capsys.readouterr().out
    cut = plan_json(repo_root / "configs/bulk-ab.yaml", capsys)  # transition: cut keeps every second
    assert all(n["master_seconds"] == n["seconds"] for n in cut["narratives"])
