"""The engine over a real sandbox: budget never passed, resume never re-buys, unknown stays unknown."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.planning.plan import build_plan
from pipeline.providers.sandbox.config import FaultConfig
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render.engine import BUDGET_EXHAUSTED, JobResult
from pipeline.render.layout import RunLayout
from pipeline.render.session import open_run
from pipeline.render.settings import RunSettings
from pipeline.script.loader import load_script
from pipeline.store.jobs import JobStatus, JobStore

from .conftest import SCALE, write_story


def settings_for(tmp_path: Path, handle: SandboxHandle, **kw: object) -> RunSettings:
    values: dict[str, object] = {
        "runs_dir": tmp_path / "runs",
        "sandbox_url": handle.base_url,
        "sandbox_latency_scale": SCALE,
        "max_in_flight": 16,
        "submit_rate_per_s": 100.0,
        "submit_burst": 16,
        **kw,
    }
    return RunSettings(**values)  # type: ignore[arg-type]


async def draft_pass(
    script: Path, settings: RunSettings, *, resubmit_unknown: bool = False, events: list[str] | None = None
) -> list[JobResult]:
    loaded = load_script(script)
    plan = build_plan(loaded.script)
    async with open_run(
        loaded, plan, run_id="r1", settings=settings, provider="sandbox", resubmit_unknown=resubmit_unknown
    ) as session:
        if events is not None:
            session.engine.on_event = lambda e, r, d: events.append(e)
        return await session.engine.run_pass(plan.requests_for("draft"))


@pytest.mark.slow
def test_spend_never_passes_the_limit_with_faults_and_many_in_flight(
    tmp_path: Path, faulty_sandbox: SandboxHandle
) -> None:
    # Independent segments: a failure does not stop the rest of a chain, so every job competes.
    script = write_story(tmp_path, limit="100.00", continuity="independent")
    plan = build_plan(load_script(script).script)
    drafts = plan.requests_for("draft")
    limit = sum((r.cost for r in drafts), Decimal(0)) - Decimal("0.50")  # just under the draft pass
    settings = settings_for(tmp_path, faulty_sandbox, max_regenerations=4)
    store = JobStore.open(RunLayout(settings.runs_dir / "r1").db_url)
    store.ensure_run("r1", script="story-test", limit=limit)  # resuming keeps this limit
    store.close()

    results = asyncio.run(draft_pass(script, settings))

    ledger = faulty_sandbox.ledger()
    charged = sum((e.cost_usd for e in ledger if e.charged), Decimal(0))
    assert charged <= limit
    assert all(e.charge_count <= 1 for e in ledger)
    store = JobStore.open(RunLayout(settings.runs_dir / "r1").db_url)
    spend = store.spend("r1")
    # What the provider billed is covered by what we committed (lost answers stay reserved).
    assert charged <= spend.committed <= limit
    # The limit really bit: some job was not bought, and the faults really happened.
    assert any(r.error == BUDGET_EXHAUSTED for r in results)
    assert any(
        r.status in (JobStatus.UNKNOWN, JobStatus.FAILED) and r.error != BUDGET_EXHAUSTED for r in results
    )


@pytest.mark.slow
def test_rerun_reuses_clips_and_buys_nothing(tmp_path: Path, sandbox: SandboxHandle) -> None:
    script = write_story(tmp_path)
    settings = settings_for(tmp_path, sandbox)
    first = asyncio.run(draft_pass(script, settings))
    assert all(r.ok for r in first)
    bought = len(sandbox.ledger())
    assert bought == len(first) == 18

    events: list[str] = []
    second = asyncio.run(draft_pass(script, settings, events=events))
    assert all(r.ok and r.reused for r in second)
    assert events.count("reused") == 18
    assert len(sandbox.ledger()) == bought

    # A damaged clip is downloaded again from its (paid) request, never bought again.
    damaged = second[0].clip
    assert damaged is not None
    damaged.path.write_bytes(b"not a video")
    events.clear()
    third = asyncio.run(draft_pass(script, settings, events=events))
    assert all(r.ok for r in third)
    assert events.count("resumed") == 1
    assert len(sandbox.ledger()) == bought
    assert all(e.charge_count == 1 for e in sandbox.ledger())


@pytest.mark.slow
def test_lost_submit_answer_is_unknown_until_resubmission_is_allowed(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    script = write_story(tmp_path)
    settings = settings_for(tmp_path, sandbox)
    sandbox.set_faults(FaultConfig(drop=1.0))  # every submit is created, its answer lost
    first = asyncio.run(draft_pass(script, settings))
    assert {r.status for r in first} <= {JobStatus.UNKNOWN, JobStatus.FAILED}
    unknown = sum(r.status == JobStatus.UNKNOWN for r in first)
    assert unknown >= 1
    created = len(sandbox.ledger())

    sandbox.set_faults(FaultConfig())
    again = asyncio.run(draft_pass(script, settings))
    assert sum(r.status == JobStatus.UNKNOWN for r in again) == unknown  # never resubmitted silently
    assert all("--resubmit-unknown" in (r.error or "") for r in again if r.status == JobStatus.UNKNOWN)
    assert len(sandbox.ledger()) == created

    allowed = asyncio.run(draft_pass(script, settings, resubmit_unknown=True))
    assert all(r.ok for r in allowed)
    # The opt-in may pay twice, and the ledger counts the lost ones as spent.
    store = JobStore.open(RunLayout(settings.runs_dir / "r1").db_url)
    assert store.spend("r1").committed >= sum((e.cost_usd for e in sandbox.ledger() if e.charged), Decimal(0))
