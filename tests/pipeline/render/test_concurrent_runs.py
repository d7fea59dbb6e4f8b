"""Two processes rendering one run id at once: the second stops, and the store never buys twice."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import JobBusy, RunBusy
from pipeline.planning.plan import build_plan
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render.engine import JobResult
from pipeline.render.session import open_run
from pipeline.render.settings import RunSettings
from pipeline.script.loader import load_script
from pipeline.store.jobs import JobStatus, JobStore

from .conftest import SCALE
from .test_shared import SCRIPT


async def draft_pass(script: Path, settings: RunSettings) -> list[JobResult]:
    loaded = load_script(script)
    plan = build_plan(loaded.script)
    async with open_run(loaded, plan, run_id="r1", settings=settings, provider="sandbox") as session:
        return await session.engine.run_pass(plan.requests_for("draft"))


def test_a_second_run_of_one_run_id_stops_at_once_and_nothing_is_bought_twice(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    script = tmp_path / "shared-test.yaml"
    script.write_text(SCRIPT)
    settings = RunSettings(
        runs_dir=tmp_path / "runs",
        sandbox_url=sandbox.base_url,
        sandbox_latency_scale=SCALE,
        max_in_flight=16,
        submit_rate_per_s=100.0,
        submit_burst=16,
    )

    async def both() -> list[list[JobResult] | BaseException]:
        return list(
            await asyncio.gather(
                draft_pass(script, settings), draft_pass(script, settings), return_exceptions=True
            )
        )

    first, second = asyncio.run(both())
    assert isinstance(second, RunBusy) and "r1 is being rendered by process" in str(second)
    assert isinstance(first, list) and all(r.ok for r in first)
    assert len(sandbox.ledger()) == len(first)
    # Once the first has finished, the same command resumes: nothing missing, nothing bought.
    again = asyncio.run(draft_pass(script, settings))
    assert all(r.ok and r.reused for r in again) and len(sandbox.ledger()) == len(first)


def test_the_store_refuses_to_buy_a_job_already_out(tmp_path: Path) -> None:
    store = JobStore.in_directory(tmp_path)
    store.ensure_run("r1", script="s", limit=Decimal(10))
    key = store.upsert_job(run_id="r1", narrative="n", variant="a", pass_="draft", segment=0, body={}).key
    assert store.begin_submit(key, Decimal(1)) is not None
    with pytest.raises(JobBusy) as busy:
        store.begin_submit(key, Decimal(1))
    assert busy.value.status == JobStatus.SUBMITTING
    store.mark_submitted(key, "req-1")
    with pytest.raises(JobBusy):
        store.begin_submit(key, Decimal(1))
    assert store.spend("r1").reserved == Decimal(1)  # the refused attempts reserved nothing
    store.close()
