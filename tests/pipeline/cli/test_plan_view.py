"""The human view of a plan (:mod:`pipeline.cli.plan_view`): master lengths, totals, provisional marks."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from pipeline.cli import plan_view
from pipeline.planning.plan import RenderPlan, build_plan
from pipeline.script.loader import load_script


def _plan(repo_root: Path, name: str) -> RenderPlan:
    return build_plan(load_script(str(repo_root / "configs" / f"{name}.yaml")).script)


def _printed(plan: RenderPlan) -> str:
    console = Console(record=True, width=240, highlight=False)
    plan_view.print_plan(console, plan)
    return console.export_text()


def test_master_line_names_length_shots_and_crossfades(repo_root: Path) -> None:
    plan = _plan(repo_root, "long-form-story")
    text = _printed(plan)
    for n in plan.narratives:
        joins = len(n.segments) - 1
        assert joins > 0 and n.seconds > n.master_seconds
        fade = (n.seconds - n.master_seconds) / joins
        assert (
            f"master   {n.id}: {n.master_seconds:g} s ({n.seconds} s of shots, {joins} crossfades of {fade:g} s)"
            in text
        )


def test_master_line_without_crossfades(repo_root: Path) -> None:
    text = _printed(_plan(repo_root, "bulk-ab"))
    assert "master   bottle: 10 s (10 s of shots)\n" in text
    assert "crossfades" not in text


def test_totals_and_degradation(repo_root: Path) -> None:
    plan = _plan(repo_root, "bulk-ab")
    text = _printed(plan)
    assert f"Plan of bulk-ab: {len(plan.requests)} requests" in text
    assert "finals" in text and "3 of 6 at pro" in text
    assert "of budget $16.00" in text
    assert "degraded: finals reduced from 6 to 3" in text
    assert "* finals are chosen at run time" not in text  # select: all is not provisional


def test_provisional_finals_are_marked(repo_root: Path) -> None:
    plan = _plan(repo_root, "weekly-campaign")
    provisional = [r for r in plan.requests if r.provisional]
    assert provisional
    text = _printed(plan)
    rows = [line for line in text.splitlines() if line.startswith(" spot") or line.startswith("spot")]
    marked = [line for line in rows if " * " in line]
    assert len(marked) == len(provisional)
    assert all("final" in line for line in marked)
    assert f"* finals are chosen at run time (select: {plan.select})" in text
    assert f"reserves the {len(plan.budget.final_variants)} most expensive" in text


def test_large_plans_group_one_row_per_master(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(repo_root, "bulk-ab")
    monkeypatch.setattr(plan_view, "MAX_DETAIL_ROWS", 1)
    text = _printed(plan)
    assert f"Plan of bulk-ab: {len(plan.requests)} requests (one row per master)" in text
    masters = {(r.narrative, r.variant, r.pass_) for r in plan.requests}
    rows = [line for line in text.splitlines() if line.lstrip().startswith("bottle ")]
    assert len(rows) == len(masters)
    assert all("10 s" in line for line in rows)  # the master column
