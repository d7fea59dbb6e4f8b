"""The script's pydantic models: strict, closed, with the contract's defaults and wording."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.pricing import Tier
from pipeline.script.model import BASE_SETTINGS, Budget, Schedule, Script, Shot


def _script(**changes: Any) -> Script:
    data: dict[str, Any] = {
        "version": 1,
        "name": "spring-launch",
        "narratives": [{"id": "n1", "shots": [{"duration": 5, "action": "a gull lands"}]}],
        "budget": {"limit_usd": 20.0},
    }
    data.update(changes)
    return Script.model_validate(data)


def test_a_minimal_script_gets_the_contract_defaults() -> None:
    script = _script()
    assert [v.id for v in script.variants] == ["default"]
    assert script.budget.draft is Tier.STANDARD and script.budget.final is Tier.PRO
    assert script.budget.select == "all"
    assert script.finals_requested == 1
    assert script.subtitles is False  # no dialogue
    assert script.output.archive == "./renders"
    assert script.settings_for(script.narratives[0], script.variants[0]) == BASE_SETTINGS


def test_settings_layer_defaults_then_narrative_then_variant() -> None:
    script = _script(
        defaults={"aspect_ratio": "9:16", "cfg_scale": 0.7, "seed": 1},
        narratives=[{"id": "n1", "seed": 2, "audio": True, "shots": [{"duration": 5, "action": "x"}]}],
        variants=[{"id": "a", "overrides": {"seed": 3}}, {"id": "b"}],
    )
    n = script.narratives[0]
    a = script.settings_for(n, script.variants[0])
    b = script.settings_for(n, script.variants[1])
    assert (a["aspect_ratio"], a["cfg_scale"], a["audio"], a["seed"]) == ("9:16", 0.7, True, 3)
    assert b["seed"] == 2


def test_models_are_strict_and_closed() -> None:
    with pytest.raises(ValidationError) as info:
        Shot.model_validate({"duration": "5", "action": "x"})  # no "5" → 5
    assert info.value.errors()[0]["loc"] == ("duration",)
    with pytest.raises(ValidationError, match="extra"):
        Shot.model_validate({"duration": 5, "action": "x", "lens": "35mm"})
    with pytest.raises(ValidationError, match="must not be empty"):
        Shot.model_validate({"duration": 5, "action": "   "})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Spring_Launch"}, "must be lowercase letters, digits and single '-'"),
        ({"narratives": []}, "at least 1"),
        ({"budget": {"limit_usd": 20.0, "draft_tier": "none", "select": "auto"}}, "draft_tier is none"),
        (
            {"narratives": [{"id": "n1", "shots": [{"duration": 61, "action": "x"}]}]},
            "must be between 1 and 60 (got 61)",
        ),
        ({"defaults": {"cfg_scale": 1.5}}, "must be between 0.0 and 1.0 (got 1.5)"),
    ],
)
def test_bad_values_get_the_contracts_wording(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _script(**changes)


def test_budget_passes_and_schedule_checks() -> None:
    no_drafts = Budget(limit_usd=5.0, draft_tier="none")
    assert no_drafts.draft is None and no_drafts.final is Tier.PRO
    assert _script(budget={"limit_usd": 5.0, "finals": 0}).finals_requested == 0
    assert Schedule(cron="0 6 * * 1").timezone == "UTC"
    with pytest.raises(ValidationError, match="not a valid cron expression"):
        Schedule(cron="every monday")
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        Schedule(cron="0 6 * * 1", timezone="Mars/Olympus")


def test_subtitles_default_to_whether_there_is_dialogue() -> None:
    spoken = _script(
        narratives=[
            {
                "id": "n1",
                "shots": [{"duration": 5, "action": "x", "dialogue": [{"speaker": "Ann", "line": "Hi"}]}],
            }
        ]
    )
    assert spoken.has_dialogue and spoken.subtitles
    assert _script(output={"subtitles": False}).subtitles is False
