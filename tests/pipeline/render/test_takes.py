"""Rerolls and takes on a real sandbox, the ledger as the judge: a reroll is one charge and a new
master take, the old take stays listed and comes back for nothing, every take is archived under
keys of its own, and a chained reroll without a terminal asks for a decision (exit 64)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pipeline.archive.archiver import archive_run
from pipeline.archive.manifest import load_manifest
from pipeline.cli import main
from pipeline.hashing import sha256_file
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render.layout import RunLayout
from pipeline.render.takebook import SegmentRef, list_takes
from pipeline.render.takes import open_takes
from pipeline.settings import Settings

from .test_reuse import charges, execute, settings_for, write


def _master(settings: Settings) -> Path:
    return RunLayout(settings.run.runs_dir / "r1").master_dir("spots", "a", "draft")


def _archive(settings: Settings, archive: Path) -> None:
    report = archive_run(RunLayout(settings.run.runs_dir / "r1").masters_dir, str(archive))
    assert not report.refused, [str(f.error) for f in report.refused]


@pytest.mark.slow
def test_a_reroll_is_one_charge_and_the_old_take_comes_back_free(
    tmp_path: Path, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path / "runs", sandbox)
    script = write(tmp_path, "takes", continuity="chain")
    asyncio.run(execute(script, settings, "r1"))
    master = _master(settings)
    first = sha256_file(master / "master.mp4")
    archive = tmp_path / "archive"
    _archive(settings, archive)
    assert charges(sandbox) == 5

    ref = SegmentRef("spots", "a", "draft", 4)  # the last of the chain: nothing follows it

    async def reroll() -> None:
        async with open_takes("r1", settings, provider="sandbox") as takes:
            outcome = await takes.reroll(ref, seed=7)
        assert [(r.take, r.seed) for r in outcome.bought] == [(2, 7)]
        assert outcome.master_take == 2

    asyncio.run(reroll())
    assert charges(sandbox) == 6  # one request bought
    rerolled = sha256_file(master / "master.mp4")
    assert rerolled != first
    manifest = load_manifest(master / "manifest.json")
    assert manifest.take == 2 and [s.take for s in manifest.segments] == [1, 1, 1, 1, 2]
    assert manifest.segments[4].seed == 7
    _archive(settings, archive)  # a new take: new keys, nothing refused
    take_two = archive / "iterate" / "r1" / "spots" / "a" / "draft" / "take-2" / "master.mp4"
    assert sha256_file(take_two) == rerolled

    # Running the run again buys nothing and keeps the rerolled master as it is.
    asyncio.run(execute(script, settings, "r1"))
    assert charges(sandbox) == 6
    assert sha256_file(master / "master.mp4") == rerolled

    rows = list_takes(settings.run.runs_dir / "r1")
    assert [(r.ref.segment, r.take, r.current) for r in rows if r.ref.segment == 4] == [
        (4, 1, False),
        (4, 2, True),
    ]
    assert all(r.cost > 0 for r in rows)

    async def use_first() -> None:
        async with open_takes("r1", settings, buy=False) as takes:
            outcome = await takes.use(ref, 1)
        assert outcome.master_take == 1

    asyncio.run(use_first())
    assert charges(sandbox) == 6  # switching back buys nothing
    assert sha256_file(master / "master.mp4") == first  # byte for byte: its archive keys still hold
    assert load_manifest(master / "manifest.json").take is None
    _archive(settings, archive)
    assert [(r.take, r.current) for r in list_takes(settings.run.runs_dir / "r1") if r.ref.segment == 4] == [
        (1, True),
        (2, False),
    ]

    # Segment 1 has 3 chained segments after it: without a terminal, a decision is required.
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(settings.run.runs_dir))
    monkeypatch.setenv("KLINGFLOW_SANDBOX_URL", sandbox.base_url)
    args = ["reroll", "r1", "--narrative", "spots", "--variant", "a", "--pass", "draft", "--segment", "1"]
    assert main([*args, "--provider", "sandbox"]) == 64
    assert charges(sandbox) == 6
    assert json.loads((settings.run.runs_dir / "r1" / "takes.json").read_text())["masters"]
