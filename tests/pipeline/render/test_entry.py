"""The one entry into a run: load, plan and settle the id once; candidate finals in the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.planning.plan import RequestBuilder
from pipeline.render.entry import Launch, prepare_run, resolve_run_id
from pipeline.render.progress import RunHooks
from pipeline.render.run import RenderRun
from pipeline.settings import load_settings


def test_prepare_run_loads_plans_and_names_the_run(repo_root: Path) -> None:
    prepared = prepare_run(repo_root / "configs" / "weekly-campaign.yaml")
    assert prepared.run_id == prepared.default_run_id
    assert prepared.run_id.startswith("weekly-campaign-")
    assert prepared.plan.requests and prepared.plan.script == prepared.loaded.script.name
    assert prepare_run(repo_root / "configs" / "weekly-campaign.yaml", "mine").run_id == "mine"
    with pytest.raises(ConfigError):
        resolve_run_id(prepared.loaded, "../escape")


def test_a_run_on_fal_or_kling_is_not_a_resume_of_the_same_script_elsewhere(repo_root: Path) -> None:
    script = repo_root / "configs" / "weekly-campaign.yaml"
    runcomfy = prepare_run(script, provider="runcomfy")
    fal = prepare_run(script, provider="fal")
    assert prepare_run(script, provider="sandbox").run_id == runcomfy.run_id  # as it always was
    assert fal.run_id == f"{runcomfy.run_id}-fal" == fal.default_run_id
    assert prepare_run(script, provider="kling").run_id == f"{runcomfy.run_id}-kling"
    assert fal.plan.provider == "fal"


def test_the_plan_lists_every_candidate_final(repo_root: Path) -> None:
    # weekly-campaign: three variants, two finals chosen at run time (select: auto).
    prepared = prepare_run(repo_root / "configs" / "weekly-campaign.yaml")
    plan = prepared.plan
    tier = plan.budget.final_tier
    assert tier is not None and plan.select == "auto"
    builder = RequestBuilder(prepared.loaded.script, plan.narratives)
    expected = [r for v in plan.variants for r in builder.requests(builder.variant_index(v), "final", tier)]
    assert list(plan.candidate_finals) == expected
    assert {r.variant for r in plan.candidate_finals} == set(plan.variants)
    assert not any(r.provisional for r in plan.candidate_finals)


def test_the_run_only_filters_the_candidates(repo_root: Path) -> None:
    prepared = prepare_run(repo_root / "configs" / "weekly-campaign.yaml")
    run = RenderRun.__new__(RenderRun)  # final_requests reads only the plan
    run.plan = prepared.plan
    chosen = run.final_requests(["c", "a"])
    assert [r.variant for r in chosen] == ["c"] * (len(chosen) // 2) + ["a"] * (len(chosen) // 2)
    assert all(r in prepared.plan.candidate_finals for r in chosen)
    assert run.final_requests([]) == []


def test_plan_json_adds_candidate_finals_and_keeps_requests(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(repo_root / "configs" / "weekly-campaign.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    finals = data["candidate_finals"]
    assert {r["variant"] for r in finals} == {"a", "b", "c"}
    assert {r["pass"] for r in finals} == {"final"}
    assert set(finals[0]) == set(data["requests"][0])
    assert isinstance(data["total_usd"], float) and isinstance(data["requests"][0]["cost_usd"], float)
    # The requests (and so the totals) are the plan's, as before: only reserved finals.
    assert len([r for r in data["requests"] if r["pass"] == "final"]) < len(finals)


def test_a_launch_is_opaque_to_prefects_parameter_encoding(repo_root: Path) -> None:
    # Prefect stores what fastapi's jsonable_encoder makes of a flow's parameters, and passes
    # an object it cannot encode as it is (prefect/flows.py, Flow.serialize_parameters).
    from fastapi.encoders import jsonable_encoder

    launch = Launch(prepare_run(repo_root / "configs" / "weekly-campaign.yaml"), load_settings(), RunHooks())
    with pytest.raises((TypeError, ValueError)):
        jsonable_encoder(launch)
    assert "weekly-campaign" in repr(launch)
