"""Clips in shared storage: a run resumed by another worker stitches from them, buys nothing."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from pipeline.hashing import sha256_file
from pipeline.planning.plan import build_plan
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render.engine import JobResult
from pipeline.render.session import open_run
from pipeline.render.settings import RunSettings
from pipeline.render.shared import ClipShare
from pipeline.script.loader import load_script

from .conftest import SCALE

SCRIPT = """\
version: 1
name: shared-test
defaults: {audio: false, style: "test card"}
narratives:
  - id: n
    continuity: independent
    shots:
      - {duration: 10, action: "a boat leaves the harbour"}
      - {duration: 8, action: "a gull over the waves"}
variants:
  - id: a
  - id: b
    overrides: {seed: 2}
budget: {limit_usd: 5, draft_tier: standard, final_tier: pro, finals: 0}
"""


def worker_settings(tmp_path: Path, handle: SandboxHandle, worker: str) -> RunSettings:
    """One worker's settings: its own disk, the job store and shared storage of every worker."""
    return RunSettings(
        runs_dir=tmp_path / worker / "runs",
        store_url=f"sqlite:///{tmp_path / 'shared-jobs.db'}",
        shared_url=str(tmp_path / "shared"),
        sandbox_url=handle.base_url,
        sandbox_latency_scale=SCALE,
        max_in_flight=16,
        submit_rate_per_s=100.0,
        submit_burst=16,
    )


async def draft_pass(script: Path, settings: RunSettings, events: list[str]) -> list[JobResult]:
    loaded = load_script(script)
    plan = build_plan(loaded.script)
    async with open_run(loaded, plan, run_id="r1", settings=settings, provider="sandbox") as session:
        session.engine.on_event = lambda e, r, d: events.append(e)
        return await session.engine.run_pass(plan.requests_for("draft"))


def test_another_worker_resumes_from_shared_clips_without_buying_or_downloading(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    script = tmp_path / "shared-test.yaml"
    script.write_text(SCRIPT)
    first = asyncio.run(draft_pass(script, worker_settings(tmp_path, sandbox, "w1"), []))
    assert all(r.ok for r in first)
    bought = len(sandbox.ledger())
    shared = sorted((tmp_path / "shared" / "runs" / "r1" / "clips").rglob("*.mp4"))
    assert len(shared) == len(first) == bought
    # What is shared is exactly what the first worker verified.
    assert {sha256_file(p) for p in shared} == {r.clip.sha256 for r in first if r.clip}

    # The second worker is another machine: the first one's disk is out of its reach.
    shutil.rmtree(tmp_path / "w1")
    events: list[str] = []
    second = asyncio.run(draft_pass(script, worker_settings(tmp_path, sandbox, "w2"), events))
    assert all(r.ok and r.reused for r in second)
    assert events.count("reused") == len(second) and "resumed" not in events  # nothing downloaded
    assert all(r.clip and r.clip.path.is_relative_to(tmp_path / "w2") for r in second)
    assert len(sandbox.ledger()) == bought

    # A damaged shared clip is never used: that one clip comes again from its paid request.
    shared[0].write_bytes(b"not the clip")
    events.clear()
    shutil.rmtree(tmp_path / "w2")
    third = asyncio.run(draft_pass(script, worker_settings(tmp_path, sandbox, "w3"), events))
    assert all(r.ok for r in third)
    assert events.count("resumed") == 1
    assert len(sandbox.ledger()) == bought
    assert all(e.charge_count == 1 for e in sandbox.ledger())


def test_each_take_of_a_segment_has_a_key_of_its_own(tmp_path: Path) -> None:
    """A reroll's take is shared under its own file name, never over the first take's key."""
    script = tmp_path / "s.yaml"
    script.write_text(SCRIPT)
    request = build_plan(load_script(script).script).requests_for("draft")[0]
    share = ClipShare.open(str(tmp_path / "shared"), "r1")
    first = share.key(request, "seg-000.mp4")
    assert first == share.key(request)  # the first take keeps the key it always had
    assert share.key(request, "seg-000.take-2.mp4") != first
    assert share.key(request, "seg-000.take-2.mp4").endswith("/seg-000.take-2.mp4")
    share.close()
