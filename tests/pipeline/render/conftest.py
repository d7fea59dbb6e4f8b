"""Fixtures for render runs: scripts written to tmp_path and a sandbox shared by a test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox

#: The sandbox's latency multiplier in these tests (a 10 s standard clip is ready in ~0.3 s).
SCALE = 0.01

STORY = """\
version: 1
name: {name}
defaults: {{audio: true, style: "test card"}}
narratives:
  - id: story
    continuity: {continuity}
    shots:
      - {{duration: 10, action: "a boat leaves the harbour", dialogue: [{{speaker: "The captain", line: "Cast off!"}}]}}
      - {{duration: 12, action: "the boat crosses a storm"}}
      - {{duration: 8, action: "the storm breaks"}}
      - {{duration: 10, action: "a coastline appears"}}
  - id: teaser
    continuity: independent
    shots:
      - {{duration: 8, action: "a gull over the waves"}}
      - {{duration: 8, action: "the boat at sunset"}}
variants:
  - id: a
  - id: b
    overrides: {{seed: 2}}
  - id: c
    overrides: {{seed: 3}}
budget:
  limit_usd: {limit}
  draft_tier: standard
  final_tier: pro
  finals: {finals}
  select: {select}
output:
  archive: {archive}
"""


def write_story(
    tmp_path: Path,
    *,
    name: str = "story-test",
    limit: str = "33.00",
    finals: int = 3,
    select: str = "auto",
    continuity: str = "chain",
) -> Path:
    """A script with a 40 s chained narrative, a 16 s independent one and 3 variants.

    Drafts cost 56 s × 3 × 0.084 = $14.112; a pro final with audio 56 s × 0.168 = $9.408, so
    $33.00 allows exactly two finals.
    """
    script = tmp_path / f"{name}.yaml"
    script.write_text(
        STORY.format(
            name=name,
            limit=limit,
            finals=finals,
            select=select,
            continuity=continuity,
            archive=tmp_path / "archive",
        )
    )
    return script


# Per test on purpose, unlike the session-wide one of tests/pipeline/providers/conftest.py: the
# render tests count what the provider charged, so each needs a ledger no other test wrote to.
# In-process and started in milliseconds, it costs nothing to start anew.
@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    """A fresh fault-free sandbox (its ledger belongs to one test): fast, small pictures."""
    with run_sandbox(SandboxConfig(latency_scale=SCALE, render_scale=0.1, slots=16)) as handle:
        yield handle


@pytest.fixture
def faulty_sandbox() -> Iterator[SandboxHandle]:
    """A sandbox failing, dropping and erroring on a good share of requests."""
    faults = FaultConfig(fail=0.25, drop=0.15, server_error=0.15, rate_limit=0.1, seed=7)
    with run_sandbox(SandboxConfig(latency_scale=SCALE, render_scale=0.1, slots=16, faults=faults)) as handle:
        yield handle
