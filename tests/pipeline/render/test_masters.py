"""Masters: kept when their inputs are unchanged, remade when not, leftovers of a kill removed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.hashing import sha256_file
from pipeline.media.run import ffmpeg
from pipeline.planning.plan import build_plan
from pipeline.render import masters
from pipeline.render.masters import INPUTS_NAME, Clip, make_master
from pipeline.script.loader import parse_script

SCRIPT = """\
version: 1
name: keep
narratives:
  - id: n
    shots:
      - {duration: 10, action: "a", dialogue: [{speaker: "The captain", line: "<b>Hi</b> --> there"}]}
      - {duration: 8, action: "b"}
budget: {limit_usd: 20}
output: {transition: crossfade, crossfade_seconds: 0.5, loudness_lufs: null}
"""


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    loaded = parse_script(SCRIPT.encode(), file="keep.yaml", base_dir=tmp_path)
    plan = build_plan(loaded.script)
    requests = plan.requests_for("draft")
    clips = []
    for r in requests:
        path = tmp_path / f"seg{r.segment}.mp4"
        ffmpeg(
            ["-y", "-f", "lavfi", "-i", f"testsrc2=s=64x36:r=24:d={r.duration}", "-c:v", "libx264",
             "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
            what="test clip",
        )  # fmt: skip
        clips.append(
            Clip(request=r, path=path, sha256=sha256_file(path), request_id=f"r{r.segment}", cost=Decimal(1))
        )
    return {
        "script": loaded.script,
        "script_sha256": loaded.sha256,
        "run_id": "run",
        "narrative": loaded.script.narratives[0],
        "plan": plan.narratives[0],
        "clips": clips,
        "directory": tmp_path / "masters" / "n" / "default" / "draft",
        "plan_summary": {},
        "started_at": datetime.now(UTC),
    }


@pytest.mark.slow
def test_an_unchanged_master_is_kept_and_a_changed_one_remade(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_master(**setup)
    assert first.delivered and first.qc is not None, first.error
    # The plan's length: 18 s of shots less one 0.5 s crossfade, and QC checked it.
    assert setup["plan"].master_seconds == 17.5
    assert abs(first.duration_s - 17.5) < 0.05 and not first.qc.of_kind("duration")
    directory: Path = setup["directory"]
    assert (directory / INPUTS_NAME).is_file()

    # A killed run's leftovers: a stitch work folder, a contact sheet's, a partial manifest.
    (directory / ".master.abc123").mkdir()
    (directory / ".master.abc123" / "piece-00000.pcm").write_bytes(b"x" * 1000)
    (directory / ".contact-sheet.def456").mkdir()
    (directory / ".manifest.json.999.partial").write_text("{")

    calls: list[object] = []
    real_stitch = masters.stitch  # type: ignore[attr-defined]

    def counting_stitch(*a: Any, **k: Any) -> Any:
        calls.append(a)
        return real_stitch(*a, **k)

    monkeypatch.setattr(masters, "stitch", counting_stitch)
    again = make_master(**setup)
    assert again.delivered and again.sha256 == first.sha256 and again.qc == first.qc
    assert calls == []  # nothing stitched again
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith(".")) == []

    # The master file damaged: it no longer verifies, so it is made again.
    (directory / "master.mp4").write_bytes(b"not a master")
    assert make_master(**setup).delivered and len(calls) == 1

    # A clip bought again (another sha256): the master is remade from it.
    clips = list(setup["clips"])
    clips[1] = Clip(clips[1].request, clips[1].path, "0" * 64, "r9", Decimal(1))
    assert make_master(**{**setup, "clips": clips}).delivered and len(calls) == 2


def test_a_master_made_from_its_clips_inspections_reuses_them(
    setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes, detectors and sheet rows prepared on arrival: the master probes no clip again,
    decodes only its joins and audio, stacks the rows, and its QC says what a full decode says."""
    plan = setup["plan"]
    found = [
        masters.inspect_clip(c.path, masters.sheet_row("n", c.request, seg.content_seconds, c.path))
        for c, seg in zip(setup["clips"], plan.segments, strict=True)
    ]
    assert all(i is not None and i.sheet_row is not None and Path(i.sheet_row.png).is_file() for i in found)
    whole = make_master(**{**setup, "directory": tmp_path / "whole"})
    probed: list[str] = []
    real_probe = masters.probe  # type: ignore[attr-defined]

    def spy(p: Path, **k: Any) -> Any:
        probed.append(str(p))
        return real_probe(p, **k)

    monkeypatch.setattr("pipeline.media.stitch.probe", spy)
    fast = make_master(**{**setup, "directory": tmp_path / "fast", "inspections": found})
    assert fast.delivered and whole.qc is not None and fast.qc is not None
    assert fast.qc.passed == whole.qc.passed
    assert [f.kind for f in fast.qc.findings] == [f.kind for f in whole.qc.findings]
    assert probed  # the stitch verifies what it wrote ...
    assert not set(probed) & {str(c.path) for c in setup["clips"]}  # ... but probes no clip again
    assert (tmp_path / "fast" / "contact-sheet.png").stat().st_size > 0
