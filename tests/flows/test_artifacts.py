"""The flow's artifacts: keys per script, the plan following the choice of finals, links that
point at the archived copy (or the local file)."""

from __future__ import annotations

from pathlib import Path

from flows.artifacts import key, link_for, planned_requests
from pipeline.planning.plan import build_plan
from pipeline.script.loader import load_script


def test_keys_carry_the_script_name() -> None:
    assert key("weekly-campaign", "render-plan") == "weekly-campaign-render-plan"


def test_the_plan_follows_the_chosen_finals(repo_root: Path) -> None:
    plan = build_plan(load_script(str(repo_root / "configs/bulk-ab.yaml")).script)
    assert planned_requests(plan, None) == list(plan.requests)
    chosen = planned_requests(plan, ["v02"])
    finals = [r for r in chosen if r.pass_ == "final"]
    assert finals and {r.variant for r in finals} == {"v02"}
    assert [r for r in chosen if r.pass_ == "draft"] == plan.requests_for("draft")
    assert not [r for r in planned_requests(plan, []) if r.pass_ == "final"]


def test_links_point_at_the_archived_copy_else_the_local_file(tmp_path: Path) -> None:
    master = tmp_path / "runs" / "master.mp4"
    archived = tmp_path / "archive" / "master.mp4"
    assert link_for(master, {}) == master.resolve().as_uri()
    assert link_for(master, {master: str(archived)}) == archived.resolve().as_uri()
