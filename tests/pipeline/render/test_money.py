"""Money as the provider sees it: a billed request is charged even when its clip never arrived,
an unknown job says what it may cost and what to do, a refused resubmission says by how much,
and the store and hashing stay off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.hashing import sha256_file
from pipeline.planning.plan import build_plan
from pipeline.providers.sandbox.config import FaultConfig
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render import engine as engine_module
from pipeline.render import job as job_module
from pipeline.render import reuse as reuse_module
from pipeline.render.engine import JobResult
from pipeline.render.layout import RunLayout
from pipeline.render.session import open_run
from pipeline.render.settings import RunSettings
from pipeline.script.loader import load_script
from pipeline.store.jobs import JobStatus, JobStore

from .test_engine import settings_for

#: Three requests (no two shots fit in one 15 s request): 10 s, 8 s, 12 s without audio, at
#: $0.084/s: $0.84, $0.672, $1.008.
SCRIPT = """\
version: 1
name: money
defaults: {{audio: false, style: "test card"}}
narratives:
  - id: spots
    continuity: {continuity}
    shots:
      - {{duration: 10, action: "a boat leaves the harbour"}}
      - {{duration: 8, action: "a gull over the waves"}}
      - {{duration: 12, action: "the boat at sunset"}}
variants:
  - id: a
budget:
  limit_usd: 10.00
  draft_tier: standard
  final_tier: pro
  finals: 0
  select: auto
"""


def write_script(tmp_path: Path, continuity: str = "independent") -> Path:
    script = tmp_path / "money.yaml"
    script.write_text(SCRIPT.format(continuity=continuity))
    return script


async def draft_pass(
    script: Path,
    settings: RunSettings,
    *,
    resubmit_unknown: bool = False,
    events: list[tuple[str, str]] | None = None,
    prepare: Callable[[Any], None] | None = None,
) -> list[JobResult]:
    loaded = load_script(script)
    plan = build_plan(loaded.script)
    async with open_run(
        loaded, plan, run_id="r1", settings=settings, provider="sandbox", resubmit_unknown=resubmit_unknown
    ) as session:
        if events is not None:
            session.engine.on_event = lambda e, r, d: events.append((e, d))
        if prepare is not None:
            prepare(session.engine)
        return await session.engine.run_pass(plan.requests_for("draft"))


def open_store(settings: RunSettings) -> JobStore:
    return JobStore.open(RunLayout(settings.runs_dir / "r1").db_url)


def billed(sandbox: SandboxHandle) -> Decimal:
    return sum((e.cost_usd for e in sandbox.ledger() if e.charged), Decimal(0))


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["truncate", "corrupt"])
def test_a_billed_request_whose_clip_never_arrived_is_charged_and_fetched_again_for_free(
    tmp_path: Path, sandbox: SandboxHandle, fault: str
) -> None:
    script = write_script(tmp_path)
    settings = settings_for(tmp_path, sandbox)
    sandbox.set_faults(FaultConfig(**{fault: 1.0}))
    events: list[tuple[str, str]] = []
    first = asyncio.run(draft_pass(script, settings, events=events))

    assert [r.status for r in first] == [JobStatus.CHARGED] * 3
    assert all("is charged" in (r.error or "") and "not bought again" in (r.error or "") for r in first)
    ledger = sandbox.ledger()
    assert len(ledger) == 3 and all(e.charged for e in ledger)
    store = open_store(settings)
    try:
        spend = store.spend("r1")
        # What `status`, the run summary and the report read: the provider's bill, to the cent.
        assert (spend.charged, spend.reserved) == (billed(sandbox), Decimal(0))
        assert {j.status for j in store.jobs_of("r1")} == {JobStatus.CHARGED}
    finally:
        store.close()
    # Recorded when the provider said "completed", before the download was tried.
    kinds = [e for e, _ in events]
    assert kinds.count("charged") == 3
    for request_id in (e.request_id for e in ledger):
        charged_at = next(i for i, (e, d) in enumerate(events) if e == "charged" and request_id in d)
        failed_at = next(i for i, (e, d) in enumerate(events) if e == "failed" and request_id in d)
        assert charged_at < failed_at

    sandbox.set_faults(FaultConfig())
    events.clear()
    second = asyncio.run(draft_pass(script, settings, events=events))
    assert all(r.ok and r.status == JobStatus.COMPLETED for r in second)
    assert [e for e, _ in events].count("resumed") == 3
    assert len(sandbox.ledger()) == 3  # nothing bought again
    assert all(e.charge_count == 1 for e in sandbox.ledger())
    store = open_store(settings)
    try:
        spend = store.spend("r1")
        assert (spend.charged, spend.reserved) == (billed(sandbox), Decimal(0))  # not charged twice
        assert {j.status for j in store.jobs_of("r1")} == {JobStatus.COMPLETED}
        assert [r.status for r in store.paid_requests("r1")] == ["completed"] * 3
    finally:
        store.close()


def test_an_unknown_job_says_what_it_may_cost_and_what_to_do(tmp_path: Path, sandbox: SandboxHandle) -> None:
    script = write_script(tmp_path)
    settings = settings_for(tmp_path, sandbox)
    sandbox.set_faults(FaultConfig(drop=1.0))  # created (and billed when done), answer lost
    first = asyncio.run(draft_pass(script, settings))
    assert [r.status for r in first] == [JobStatus.UNKNOWN] * 3
    sandbox.set_faults(FaultConfig())
    again = asyncio.run(draft_pass(script, settings))
    costs = ["$0.84", "$0.672", "$1.008"]  # what each keeps reserved
    for result, cost in zip(again, costs, strict=True):
        assert result.status == JobStatus.UNKNOWN
        error = result.error or ""
        assert f"billed up to {cost}" in error
        assert f"klingflow run {script} --resubmit-unknown" in error
        assert "may pay twice" in error and "dashboard or ledger" in error


def test_resubmitting_unknown_jobs_over_budget_says_by_how_much(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    script = write_script(tmp_path)
    settings = settings_for(tmp_path, sandbox)
    store = open_store(settings)
    store.ensure_run("r1", script="money", limit=Decimal("3.02"))  # kept on resume
    store.close()
    sandbox.set_faults(FaultConfig(drop=1.0))
    asyncio.run(draft_pass(script, settings))  # $2.52 reserved by three unknown jobs
    sandbox.set_faults(FaultConfig())
    created = len(sandbox.ledger())

    results = asyncio.run(draft_pass(script, settings, resubmit_unknown=True))

    # $0.50 left: none of them can be bought again, and each says by how much it is short.
    assert [r.status for r in results] == [JobStatus.UNKNOWN] * 3
    shortfalls = {"$0.84": "$0.34", "$0.672": "$0.172", "$1.008": "$0.508"}
    for result in results:
        error = result.error or ""
        cost = next(c for c in shortfalls if f"again costs {c}," in error)
        assert f"short by {shortfalls[cost]}" in error
        assert "has $0.50 of its $3.02 budget left" in error
        assert f"billed up to {cost}" in error
    assert len(sandbox.ledger()) == created  # nothing bought
    store = open_store(settings)
    try:
        spend = store.spend("r1")
        # Left as they were: still unknown, still reserved (a refusal changes nothing).
        assert (spend.charged, spend.reserved) == (Decimal(0), Decimal("2.52"))
        assert {j.status for j in store.jobs_of("r1")} == {JobStatus.UNKNOWN}
    finally:
        store.close()


def test_store_calls_and_hashing_run_off_the_event_loop(tmp_path: Path, sandbox: SandboxHandle) -> None:
    # A chain hashes each previous clip's last frame (its identity) and every job writes the store.
    script = write_script(tmp_path, continuity="chain")
    settings = settings_for(tmp_path, sandbox)
    on_loop: list[str] = []
    hashed: list[str] = []
    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread

    class WatchedStore:
        def __init__(self, store: JobStore) -> None:
            self.store = store

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.store, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                if threading.get_ident() == loop_thread:
                    on_loop.append(name)
                return method(*args, **kwargs)

            return call

    real_hash = sha256_file

    def watched_hash(path: Any, *args: Any) -> str:
        hashed.append(str(path))
        if threading.get_ident() == loop_thread:
            on_loop.append(f"sha256_file({path})")
        return real_hash(path, *args)

    def prepare(engine: Any) -> None:
        engine.store = WatchedStore(engine.store)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "sha256_file", watched_hash)  # clips, on reuse
        patch.setattr(job_module, "sha256_file", watched_hash)  # images, in a job's identity
        patch.setattr(reuse_module, "sha256_file", watched_hash)  # clips, from the clip library
        first = asyncio.run(draft_pass(script, settings, prepare=prepare))
        assert all(r.ok for r in first)
        again = asyncio.run(draft_pass(script, settings, prepare=prepare))  # reuse: hashes clips
        assert all(r.reused for r in again)
    assert any(h.endswith(".png") for h in hashed) and any(h.endswith(".mp4") for h in hashed)
    assert on_loop == []
