"""open_run: the lock, the leftovers of a killed run, the ledger row, the budget already spent.

The session opens its own provider, so these tests use the in-process sandbox (loopback only) at
a small picture size; nothing is rendered: no request is submitted.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import BudgetError
from pipeline.planning.plan import build_plan
from pipeline.providers.settings import ProviderSettings
from pipeline.render.layout import RunLayout
from pipeline.render.session import open_run
from pipeline.render.settings import RunSettings
from pipeline.script.loader import LoadedScript, parse_script
from pipeline.store.jobs import SqlJobStore

SCRIPT = b"""\
version: 1
name: session-test
narratives:
  - id: story
    shots:
      - {duration: 5, action: "a gull lands"}
budget:
  limit_usd: 20
  finals: 0
"""


def _loaded(tmp_path: Path) -> LoadedScript:
    return parse_script(SCRIPT, file="s.yaml", base_dir=tmp_path)


def _settings(tmp_path: Path) -> RunSettings:
    return RunSettings(runs_dir=tmp_path / "runs", sandbox_render_scale=0.1, sandbox_latency_scale=0.01)


def _open(tmp_path: Path) -> Decimal:
    """Open and close the run ``r1``; the limit its ledger row holds while open."""
    loaded = _loaded(tmp_path)

    async def go() -> Decimal:
        async with open_run(
            loaded,
            build_plan(loaded.script),
            run_id="r1",
            settings=_settings(tmp_path),
            provider="sandbox",
            provider_settings=ProviderSettings(token_file=tmp_path / "no-token"),
        ) as session:
            assert session.run_id == "r1" and session.run.run_id == "r1"
            assert session.layout.root == tmp_path / "runs" / "r1"
            assert session.engine.store is session.store
            return session.store.spend("r1").limit

    return asyncio.run(go())


def test_the_ledger_row_gets_the_scripts_limit(tmp_path: Path) -> None:
    assert _open(tmp_path) == Decimal(20)
    store = SqlJobStore.open(RunLayout(tmp_path / "runs" / "r1").db_url)
    try:
        assert store.spend("r1").limit == Decimal(20)  # kept after the session closed
        assert store.spend("r1").committed == 0
    finally:
        store.close()


def test_a_resumed_run_keeps_the_limit_it_started_with(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "runs" / "r1")
    layout.root.mkdir(parents=True)
    store = SqlJobStore.open(layout.db_url)
    try:
        store.ensure_run("r1", script="session-test", limit=Decimal(7))
    finally:
        store.close()
    assert _open(tmp_path) == Decimal(7)


def test_partial_downloads_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    clips = tmp_path / "runs" / "r1" / "clips" / "story" / "default" / "draft"
    clips.mkdir(parents=True)
    partial = clips / ".seg-000.mp4.part"
    partial.write_bytes(b"half a clip")
    finished = clips / "seg-001.mp4"
    finished.write_bytes(b"a whole clip")
    _open(tmp_path)
    assert not partial.exists()
    assert finished.read_bytes() == b"a whole clip"


def test_a_run_whose_budget_is_already_committed_is_refused(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "runs" / "r1")
    layout.root.mkdir(parents=True)
    store = SqlJobStore.open(layout.db_url)
    try:
        store.ensure_run("r1", script="session-test", limit=Decimal(1))
        job = store.upsert_job(
            run_id="r1", narrative="story", variant="default", pass_="draft", segment=0, body={}
        )
        assert store.begin_submit(job.key, Decimal(1)) is not None  # the whole $1 reserved
    finally:
        store.close()
    with pytest.raises(BudgetError, match=r"already committed \$1"):
        _open(tmp_path)
    # The run's lock was released: the same refusal again, not "run in use".
    with pytest.raises(BudgetError):
        _open(tmp_path)
