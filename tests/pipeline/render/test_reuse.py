"""The clip library on a real sandbox, with the sandbox's ledger as the judge: an edited script
buys exactly what changed (and its plan said so first), a chain re-buys from the edit on, more
finals buy only the new final, a rerun's budget counts only what it buys, and two workers
sharing PostgreSQL reuse each other's clips."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.archive.manifest import load_manifest
from pipeline.errors import BudgetError
from pipeline.hashing import sha256_file
from pipeline.planning.plan import PlannedRequest, RenderPlan, build_plan
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render.engine import JobResult
from pipeline.render.library_plan import plan_with_library
from pipeline.render.reuse import (
    LibraryStep,
    base_dir_local,
    clip_identity,
    identities,
    identity_bodies,
    place,
)
from pipeline.render.run import RunResult
from pipeline.render.session import open_run
from pipeline.script.loader import load_script
from pipeline.settings import Settings, load_settings
from pipeline.store.jobs import JobStatus, SqlJobStore
from pipeline.store.library import ClipLibrary, library_url

from .conftest import SCALE

#: Five shots, no two of which fit one 15 s request: five segments of 10, 8, 12, 9, 11 s.
SCRIPT = """\
version: 1
name: iterate
defaults: {{audio: false, style: "test card"}}
narratives:
  - id: spots
    continuity: {continuity}
    shots:
      - {{duration: 10, action: "a boat leaves the harbour"}}
      - {{duration: 8, action: "{second}"}}
      - {{duration: 12, action: "the boat crosses a storm"}}
      - {{duration: 9, action: "{fourth}"}}
      - {{duration: 11, action: "the boat at sunset"}}
variants: {variants}
budget:
  limit_usd: {limit}
  draft_tier: standard
  final_tier: pro
  finals: {finals}
  select: all
output: {{archive: "{archive}"}}
"""


def write(
    tmp_path: Path,
    name: str,
    *,
    continuity: str = "independent",
    second: str = "a gull over the waves",
    fourth: str = "a coastline appears",
    finals: int = 0,
    limit: str = "20.00",
    variants: str = "[{id: a}]",
) -> Path:
    script = tmp_path / f"{name}.yaml"
    script.write_text(
        SCRIPT.format(
            continuity=continuity,
            second=second,
            fourth=fourth,
            finals=finals,
            limit=limit,
            variants=variants,
            archive=tmp_path / "archive",
        )
    )
    return script


def settings_for(runs_dir: Path, handle: SandboxHandle, **run: object) -> Settings:
    return load_settings(
        run={
            "runs_dir": runs_dir,
            "sandbox_url": handle.base_url,
            "sandbox_latency_scale": SCALE,
            "max_in_flight": 16,
            "submit_rate_per_s": 100.0,
            "submit_burst": 16,
            **run,
        }
    )


def plan_of(script: Path, settings: Settings) -> RenderPlan:
    return plan_with_library(load_script(script), settings, provider="sandbox")


async def render(script: Path, settings: Settings, run_id: str) -> list[JobResult]:
    """Every pass of the plan, drafts then finals (as a run does with ``select: all``)."""
    loaded = load_script(script)
    plan = plan_of(script, settings)
    results: list[JobResult] = []
    async with open_run(loaded, plan, run_id=run_id, settings=settings.run, provider="sandbox") as session:
        for pass_ in ("draft", "final"):
            requests = plan.requests_for(pass_)
            if requests:
                results += await session.engine.run_pass(requests)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return results


async def execute(script: Path, settings: Settings, run_id: str) -> RunResult:
    """A whole run: drafts, masters, selection, finals, archive, report."""
    loaded = load_script(script)
    plan = plan_of(script, settings)
    async with open_run(loaded, plan, run_id=run_id, settings=settings.run, provider="sandbox") as session:
        result = await session.run.execute()
    assert result.delivered, result.undelivered
    return result


def charges(handle: SandboxHandle) -> int:
    return sum(1 for e in handle.ledger() if e.charged)


def buys(plan: RenderPlan) -> list[tuple[str, str, int]]:
    return [(r.variant, r.pass_, r.segment) for r in plan.requests if not r.reuse]


@pytest.mark.slow  # a whole run with its master (ffmpeg)
def test_an_edited_shot_buys_exactly_its_segment(tmp_path: Path, sandbox: SandboxHandle) -> None:
    settings = settings_for(tmp_path / "runs", sandbox)
    first = write(tmp_path, "v1")
    assert len(build_plan(load_script(first).script).requests) == 5
    asyncio.run(render(first, settings, "v1"))
    assert charges(sandbox) == 5

    edited = write(tmp_path, "v2", fourth="a lighthouse appears")
    plan = plan_of(edited, settings)
    assert buys(plan) == [("a", "draft", 3)]
    assert plan.to_spend == next(r.cost for r in plan.requests if r.segment == 3) < plan.total

    result = asyncio.run(execute(edited, settings, "v2"))
    assert charges(sandbox) == 6  # exactly one new charge
    reused = [r for r in result.jobs if r.reused]
    assert [r.request.segment for r in reused] == [0, 1, 2, 4]
    # The reused clips are this run's files now (the earlier run's directory may go).
    assert all(r.clip is not None and (tmp_path / "runs" / "v2") in r.clip.path.parents for r in result.jobs)
    # The manifest names the run that paid for each reused clip.
    (master,) = result.drafts
    manifest = load_manifest(master.directory / "manifest.json")
    assert [s.paid_by_run for s in manifest.segments] == ["v1", "v1", "v1", None, "v1"]


@pytest.mark.slow
def test_an_edit_in_a_chain_rebuys_every_later_segment(tmp_path: Path, sandbox: SandboxHandle) -> None:
    settings = settings_for(tmp_path / "runs", sandbox)
    asyncio.run(render(write(tmp_path, "v1", continuity="chain"), settings, "v1"))
    assert charges(sandbox) == 5

    # Segment 2 of 5 (index 1): its clip changes, and so do the start frames of 3, 4 and 5.
    edited = write(tmp_path, "v2", continuity="chain", second="a heron over the waves")
    plan = plan_of(edited, settings)
    assert buys(plan) == [("a", "draft", k) for k in (1, 2, 3, 4)]  # said before running

    asyncio.run(render(edited, settings, "v2"))
    assert charges(sandbox) == 9  # exactly 4 new charges


@pytest.mark.slow
def test_more_finals_buy_only_the_new_final(tmp_path: Path, sandbox: SandboxHandle) -> None:
    settings = settings_for(tmp_path / "runs", sandbox)
    two = "[{id: a}, {id: b, overrides: {seed: 2}}]"
    asyncio.run(render(write(tmp_path, "one", finals=1, limit="60", variants=two), settings, "one"))
    assert charges(sandbox) == 15  # 2 variants × 5 drafts + 5 finals of a

    more = write(tmp_path, "two", finals=2, limit="60", variants=two)
    plan = plan_of(more, settings)
    assert buys(plan) == [("b", "final", k) for k in range(5)]
    asyncio.run(render(more, settings, "two"))
    assert charges(sandbox) == 20  # the new final's 5 requests, no draft


def test_a_rerun_over_its_limit_runs_when_what_it_buys_fits(tmp_path: Path, sandbox: SandboxHandle) -> None:
    settings = settings_for(tmp_path / "runs", sandbox)
    asyncio.run(render(write(tmp_path, "v1"), settings, "v1"))
    # The whole plan ($4.20) is over $1.00; the one changed 9 s segment ($0.756) fits.
    edited = write(tmp_path, "v2", fourth="a lighthouse appears", limit="1.00")
    with pytest.raises(BudgetError):
        build_plan(load_script(edited).script)  # without the library: every request counted
    plan = plan_of(edited, settings)
    assert plan.total > plan.budget.limit >= plan.to_spend
    asyncio.run(render(edited, settings, "v2"))
    assert charges(sandbox) == 6


@pytest.mark.slow
def test_two_workers_sharing_postgresql_reuse_each_others_clips(
    tmp_path: Path, sandbox: SandboxHandle, postgres_url: str
) -> None:
    # Two machines: each its own runs directory; one database and one shared clip storage.
    shared = {"store_url": postgres_url, "shared_url": str(tmp_path / "shared")}
    first = settings_for(tmp_path / "worker-1", sandbox, **shared)
    second = settings_for(tmp_path / "worker-2", sandbox, **shared)
    asyncio.run(render(write(tmp_path, "v1"), first, "v1"))
    shutil.rmtree(tmp_path / "worker-1")  # worker 1's disk is not worker 2's
    assert charges(sandbox) == 5

    edited = write(tmp_path, "v2", fourth="a lighthouse appears")
    assert buys(plan_of(edited, second)) == [("a", "draft", 3)]
    results = asyncio.run(render(edited, second, "v2"))
    assert charges(sandbox) == 6
    assert sum(r.reused for r in results) == 4

    library = ClipLibrary.open(library_url(tmp_path / "anywhere", postgres_url))
    try:
        stats = library.stats()
    finally:
        library.close()
    assert (stats.clips, stats.reuses) == (6, 4)


# --- identities and placing files, without a provider ------------------------------------------


def _drafts(tmp_path: Path, name: str, **kw: Any) -> list[PlannedRequest]:
    return build_plan(load_script(write(tmp_path, name, **kw)).script).requests_for("draft")


def test_a_chained_identity_follows_its_predecessor(tmp_path: Path) -> None:
    local = base_dir_local(tmp_path)
    before = identities(_drafts(tmp_path, "c1", continuity="chain"), "sandbox", local)
    after = identities(_drafts(tmp_path, "c2", continuity="chain", second="a heron"), "sandbox", local)
    assert [a == b for a, b in zip(before, after, strict=True)] == [True, False, False, False, False]
    independent = identities(_drafts(tmp_path, "i1"), "sandbox", local)
    edited = identities(_drafts(tmp_path, "i2", second="a heron"), "sandbox", local)
    assert [a == b for a, b in zip(independent, edited, strict=True)] == [True, False, True, True, True]
    # Another provider renders another clip.
    assert identities(_drafts(tmp_path, "i1"), "runcomfy", local) != independent


def test_images_enter_the_identity_by_content(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "start.png").write_bytes(b"same picture")
    (tmp_path / "two" / "start.png").write_bytes(b"same picture")
    request = replace(_drafts(tmp_path, "i1")[0], start_image="start.png")
    one = identities([request], "sandbox", base_dir_local(tmp_path / "one"))
    assert identities([request], "sandbox", base_dir_local(tmp_path / "two")) == one
    (tmp_path / "two" / "start.png").write_bytes(b"another picture")
    assert identities([request], "sandbox", base_dir_local(tmp_path / "two")) != one


def test_a_library_file_is_placed_only_when_its_bytes_check(tmp_path: Path) -> None:
    source = tmp_path / "old" / "seg-000.mp4"
    source.parent.mkdir()
    source.write_bytes(b"clip bytes")
    digest = sha256_file(source)
    dest = tmp_path / "new" / "clips" / "seg-000.mp4"
    assert place(source, dest, digest)
    assert dest.read_bytes() == b"clip bytes"
    assert not list(dest.parent.glob(".*.part"))
    other = tmp_path / "new" / "seg-001.mp4"
    source.write_bytes(b"damaged")  # the library's file changed since: never placed
    assert not place(source, other, digest)
    assert not other.exists()


def test_a_request_this_run_bought_is_followed_not_swapped_for_the_librarys(tmp_path: Path) -> None:
    # A resumed run whose request is still in flight at the provider (it will bill it): the job
    # follows it even when the library holds a clip of the same identity.
    request = _drafts(tmp_path, "i1")[0]
    local = base_dir_local(tmp_path)
    (body,) = identity_bodies([request], local)
    clip = tmp_path / "elsewhere.mp4"
    clip.write_bytes(b"the library's clip")
    library = ClipLibrary.open(f"sqlite:///{tmp_path / 'library.db'}")
    store = SqlJobStore.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    library.record(
        clip_identity("sandbox", body), provider="sandbox", body=body, file=str(clip),
        sha256=sha256_file(clip), size=clip.stat().st_size, request_id="req-0", cost=request.cost, run_id="r0",
    )  # fmt: skip
    followed: list[str] = []

    async def job() -> JobResult:
        followed.append("job")
        return JobResult(request, JobStatus.SUBMITTED, error="still running")

    async def through() -> JobResult:
        step = LibraryStep(library, "sandbox", "r1", local, store=store)
        await step.prepare([request])
        return await step.through(request, tmp_path / "r1" / "seg-000.mp4", job, lambda *_: None)

    try:
        store.ensure_run("r1", script="iterate", limit=Decimal(10))
        assert asyncio.run(through()).reused  # nothing bought here yet: the library's clip
        key = store.upsert_job(
            run_id="r1", narrative=request.narrative, variant=request.variant, pass_=request.pass_,
            segment=request.segment, body=body,
        ).key  # fmt: skip
        store.begin_submit(key, request.cost)
        store.mark_submitted(key, "req-in-flight")
        assert not asyncio.run(through()).reused
        assert followed == ["job"]
    finally:
        library.close()
        store.close()
