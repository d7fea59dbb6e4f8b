"""RenderRun's decisions, without rendering: which finals, which variants, what a manifest records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.media.qc import QCReport, QCThresholds
from pipeline.planning.plan import build_plan, request_to_dict
from pipeline.providers.fake import FakeProvider, placeholder_frame
from pipeline.render.engine import Engine
from pipeline.render.layout import RunLayout
from pipeline.render.limits import LocalLimits
from pipeline.render.masters import MasterOutcome
from pipeline.render.run import MANIFEST_REQUEST_KEYS, Chooser, RenderRun, qc_verdicts
from pipeline.script.loader import parse_script
from pipeline.store.jobs import SqlJobStore

SCRIPT = """\
version: 1
name: run-test
narratives:
  - id: story
    shots:
      - {{duration: 10, action: "a boat leaves"}}
      - {{duration: 10, action: "a storm"}}
variants: [{{id: a}}, {{id: b, overrides: {{seed: 2}}}}, {{id: c, overrides: {{seed: 3}}}}]
budget:
  limit_usd: 50
  final_tier: pro
  finals: {finals}
  select: {select}
"""


async def _image_url(path: str) -> str:
    return f"https://images.invalid/{Path(path).name}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlJobStore]:
    opened = SqlJobStore.open(RunLayout(tmp_path / "runs" / "r1").db_url)
    yield opened
    opened.close()


def _run(
    tmp_path: Path,
    store: SqlJobStore,
    *,
    select: str = "all",
    finals: int = 2,
    approve: Sequence[str] | None = None,
    choose: Chooser | None = None,
) -> RenderRun:
    loaded = parse_script(
        SCRIPT.format(select=select, finals=finals).encode(), file="s.yaml", base_dir=tmp_path
    )
    layout = RunLayout(tmp_path / "runs" / "r1")
    engine = Engine(
        run_id="r1",
        provider=FakeProvider(),
        image_url=_image_url,
        store=store,
        layout=layout,
        limits=LocalLimits(4, 1e6, 4),
        base_dir=tmp_path,
        extract_last_frame=placeholder_frame,
    )
    plan = build_plan(loaded.script)
    return RenderRun(
        loaded=loaded, plan=plan, run_id="r1", layout=layout, engine=engine, approve=approve, choose=choose
    )


def _draft(variant: str, *, passed: bool, tmp_path: Path) -> MasterOutcome:
    qc = QCReport(
        path=str(tmp_path / "master.mp4"),
        passed=passed,
        findings=(),
        duration_s=10.0,
        video_s=10.0,
        audio_s=None,
        has_audio=False,
        frame_rate=24.0,
        integrated_lufs=None,
        true_peak_dbtp=None,
        loudness_range_lu=None,
        expect_duration_s=10.0,
        expect_audio=False,
        thresholds=QCThresholds(),
    )
    return MasterOutcome("story", variant, "draft", tmp_path, path=tmp_path / "master.mp4", qc=qc)


def test_final_requests_are_the_candidates_of_the_chosen_variants_in_their_order(
    tmp_path: Path, store: SqlJobStore
) -> None:
    run = _run(tmp_path, store, select="auto")
    finals = run.final_requests(["c", "a"])
    assert [(r.variant, r.segment) for r in finals] == [("c", 0), ("c", 1), ("a", 0), ("a", 1)]
    assert all(r.pass_ == "final" and r.tier is run.plan.budget.final_tier for r in finals)
    assert all(r in run.plan.candidate_finals for r in finals)
    assert run.final_requests(["zzz"]) == []


def test_select_all_takes_the_variants_the_budget_reserved(tmp_path: Path, store: SqlJobStore) -> None:
    run = _run(tmp_path, store, select="all")
    chosen = asyncio.run(run.select([]))
    assert chosen == [run.plan.variants[i] for i in run.plan.budget.final_variants]
    assert chosen == ["a", "b"]


def test_select_auto_takes_variants_whose_drafts_all_passed(tmp_path: Path, store: SqlJobStore) -> None:
    run = _run(tmp_path, store, select="auto")
    drafts = [
        _draft("a", passed=False, tmp_path=tmp_path),
        _draft("b", passed=True, tmp_path=tmp_path),
        _draft("c", passed=True, tmp_path=tmp_path),
    ]
    assert asyncio.run(run.select(drafts)) == ["b", "c"]
    # A variant with no draft master at all is not promoted.
    assert asyncio.run(run.select(drafts[:2])) == ["b"]


def test_select_manual_needs_an_approval_or_a_chooser(tmp_path: Path, store: SqlJobStore) -> None:
    with pytest.raises(InputError, match="select: manual needs a choice"):
        asyncio.run(_run(tmp_path, store, select="manual").select([]))
    assert asyncio.run(_run(tmp_path, store, select="manual", approve=["c", "a"]).select([])) == ["a", "c"]
    with pytest.raises(InputError, match="budget allows 2"):
        asyncio.run(_run(tmp_path, store, select="manual", approve=["a", "b", "c"]).select([]))

    asked: list[int] = []

    async def choose(drafts: Sequence[MasterOutcome], finals: int) -> list[str]:
        asked.append(finals)
        return ["b"]

    assert asyncio.run(_run(tmp_path, store, select="manual", choose=choose).select([])) == ["b"]
    assert asked == [2]


def test_the_store_says_waiting_for_choice_while_a_person_is_asked(
    tmp_path: Path, store: SqlJobStore
) -> None:
    store.ensure_run("r1", script="s", limit=Decimal(50))
    seen: list[str] = []

    async def choose(drafts: Sequence[MasterOutcome], finals: int) -> list[str]:
        seen.append(store.list_runs()[0].status)
        return ["a"]

    assert asyncio.run(_run(tmp_path, store, select="manual", choose=choose).select([])) == ["a"]
    assert seen == ["waiting for choice"] and store.list_runs()[0].status == "running"


def test_qc_verdicts_name_each_master(tmp_path: Path) -> None:
    missing = MasterOutcome("story", "c", "draft", tmp_path, error="segment 0: failed")
    verdicts = asyncio.run(
        qc_verdicts(
            [
                _draft("a", passed=True, tmp_path=tmp_path),
                _draft("b", passed=False, tmp_path=tmp_path),
                missing,
            ]
        )
    )
    assert verdicts == {
        "draft story/a": "passed",
        "draft story/b": "failed",
        "draft story/c": "not delivered: segment 0: failed",
    }


def test_no_finals_asked_means_no_choice_is_asked(tmp_path: Path, store: SqlJobStore) -> None:
    run = _run(tmp_path, store, select="manual", finals=0)
    assert run.plan.budget.final_variants == ()
    assert asyncio.run(run.select([])) == []  # not even asking


def test_plan_summary_is_a_subset_of_plan_json_with_the_exact_cost(
    tmp_path: Path, store: SqlJobStore
) -> None:
    run = _run(tmp_path, store)
    finals = run.final_requests(["a"])
    summary = run.plan_summary(finals)
    assert summary["budget_usd"] == str(run.plan.budget.limit)
    assert summary["finals_planned"] == 2
    assert summary["final_tier"] == "pro"
    for recorded, planned in zip(summary["requests"], finals, strict=True):
        full = request_to_dict(planned)
        assert set(recorded) == {*MANIFEST_REQUEST_KEYS, "cost_usd"}
        assert {k: recorded[k] for k in MANIFEST_REQUEST_KEYS} == {k: full[k] for k in MANIFEST_REQUEST_KEYS}
        assert recorded["cost_usd"] == str(planned.cost)  # exact text, not a rounded float
        assert Decimal(recorded["cost_usd"]) == planned.cost
    json.dumps(summary)  # a manifest is JSON


def test_write_run_info_names_the_script_and_its_hash(tmp_path: Path, store: SqlJobStore) -> None:
    run = _run(tmp_path, store)
    run.write_run_info()
    info = json.loads((run.layout.masters_dir / "run.json").read_text())
    assert info == {
        "script": "run-test",
        "run_id": "r1",
        "script_sha256": run.loaded.sha256,
        # Where `klingflow reroll RUN` reloads the script from (a local path made absolute).
        "script_file": str(Path("s.yaml").absolute()),
    }
