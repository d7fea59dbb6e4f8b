"""The run's hooks: the spend view starts from what the run already charged and follows the
store; the session gets them at construction (nothing process-wide)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.planning.plan import build_plan
from pipeline.providers.sandbox.config import FaultConfig
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render.progress import RunHooks, fan_out
from pipeline.render.session import RunSession, open_run
from pipeline.render.settings import RunSettings
from pipeline.script.loader import load_script
from pipeline.store.jobs import Spend

from .test_engine import settings_for
from .test_money import billed, write_script


async def observed_pass(script: Path, settings: RunSettings, spends: list[Spend]) -> None:
    """A draft pass opened as the flow opens it, with the CLI's spend hook."""
    loaded = load_script(script)
    plan = build_plan(loaded.script)
    sessions: list[RunSession] = []
    hooks = RunHooks(on_start=sessions.append, on_spend=spends.append)
    async with open_run(
        loaded, plan, run_id="r1", settings=settings, provider="sandbox", hooks=hooks
    ) as session:
        assert sessions == [session]
        assert session.engine.on_spend is not None
        await session.engine.run_pass(plan.requests_for("draft"))


@pytest.mark.slow
def test_a_resumed_run_shows_what_earlier_attempts_charged(tmp_path: Path, sandbox: SandboxHandle) -> None:
    script = write_script(tmp_path)
    settings = settings_for(tmp_path, sandbox)
    sandbox.set_faults(FaultConfig(truncate=1.0))  # billed, but no clip arrives
    first: list[Spend] = []
    asyncio.run(observed_pass(script, settings, first))
    assert first[0].charged == Decimal(0)
    assert first[-1].charged == billed(sandbox) > 0  # the provider's bill, though nothing arrived
    # Never more charged than the store says at any moment, and it only grows.
    assert [s.charged for s in first] == sorted(s.charged for s in first)

    sandbox.set_faults(FaultConfig())
    resumed: list[Spend] = []
    asyncio.run(observed_pass(script, settings, resumed))
    assert resumed[0].charged == billed(sandbox)  # from the start, before any event of this run
    assert resumed[-1] == Spend(limit=Decimal("10"), reserved=Decimal(0), charged=billed(sandbox))


def test_adding_hooks_keeps_the_callers_own() -> None:
    seen: list[str] = []

    async def mine(drafts: object, finals: int) -> list[str]:
        return []

    async def theirs(drafts: object, finals: int) -> list[str]:
        return ["x"]

    base = RunHooks(on_event=lambda e, r, d: seen.append(f"cli {e}"), choose=mine)
    added = base.adding(on_event=lambda e, r, d: seen.append(f"flow {e}"), choose=theirs)
    assert added.on_event is not None
    added.on_event("done", None, "")  # type: ignore[arg-type]
    assert seen == ["cli done", "flow done"]
    assert added.choose is mine and base.on_event is not added.on_event  # frozen: a new value
    assert RunHooks().adding(choose=theirs).choose is theirs


def test_fan_out_skips_missing_sinks() -> None:
    seen: list[str] = []
    sink = fan_out(None, lambda e, r, d: seen.append(e))
    sink("submitted", None, "")  # type: ignore[arg-type]
    assert seen == ["submitted"]


def test_adding_stage_and_spend_calls_both_and_keeps_a_stage_runner() -> None:
    seen: list[str] = []

    async def runner(kind: str, label: str, work: object) -> object:
        return None

    base = RunHooks(on_stage=lambda s: seen.append(f"cli {s}"))
    added = base.adding(
        on_stage=lambda s: seen.append(f"flow {s}"),
        on_spend=lambda s: seen.append(f"flow {s.charged}"),
        run_stage=runner,  # type: ignore[arg-type]
    )
    assert added.on_stage is not None and added.on_spend is not None
    added.on_stage("draft")
    added.on_spend(Spend(Decimal(5), Decimal(0), Decimal("0.5")))
    assert seen == ["cli draft", "flow draft", "flow 0.5"]
    assert added.run_stage is runner and RunHooks().adding().on_stage is None
