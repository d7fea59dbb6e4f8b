"""Every example under ``configs/`` renders: an example can never again ship broken.

Each script is run through its draft pass on the in-process sandbox, small pictures, with
``finals`` set to 0 in a copy of the script (so the test stays cheap; the budget and everything
else are the script's own). Its masters must be delivered at their scripted length, the plan's
``master_seconds``. The final masters' settings (audio, tier) are still checked before any money
by the render rehearsal, run here on the unmodified script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.media.probe import probe
from pipeline.planning.plan import build_plan
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox
from pipeline.render.rehearsal import rehearse_masters
from pipeline.render.session import open_run
from pipeline.script.loader import load_script, parse_script

from .pipeline.render.conftest import SCALE
from .pipeline.render.test_engine import settings_for

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
FRAME = 1 / 24


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_sandbox(SandboxConfig(latency_scale=SCALE, render_scale=0.1, slots=16)) as handle:
        yield handle


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_example_renders_its_drafts_at_their_scripted_length(
    path: Path, tmp_path: Path, sandbox: SandboxHandle
) -> None:
    original = load_script(path)
    rehearse_masters(original.script, build_plan(original.script), document=original.document)

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["budget"]["finals"] = 0
    data.setdefault("output", {})["archive"] = str(tmp_path / "archive")
    loaded = parse_script(yaml.safe_dump(data).encode(), file=str(path), base_dir=path.parent)
    plan = build_plan(loaded.script)
    assert plan.requests_for("draft") and not plan.requests_for("final")

    async def run() -> object:
        async with open_run(loaded, plan, run_id="ci", settings=settings_for(tmp_path, sandbox)) as session:
            return await session.run.execute()

    result = asyncio.run(run())
    lengths = {n.id: n for n in plan.narratives}
    drafts = result.drafts  # type: ignore[attr-defined]
    assert len(drafts) == len(plan.narratives) * len(plan.variants)
    for master in drafts:
        assert master.delivered, master.error
        narrative = lengths[master.narrative]
        joins = max(1, len(narrative.segments) - 1)
        info = probe(master.path)
        assert abs(info.video_duration - narrative.master_seconds) <= joins * FRAME + 1e-3, master
        assert master.qc is not None and not master.qc.of_kind("duration")
    assert result.delivered  # type: ignore[attr-defined]
