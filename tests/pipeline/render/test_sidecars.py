"""A master's poster frame and ``master.otio``: written beside it, listed in its manifest, the
timeline's markers on the narrative's shots."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.archive.manifest import load_manifest
from pipeline.hashing import sha256_file
from pipeline.media.probe import probe
from pipeline.media.run import ffmpeg
from pipeline.media.timeline import read_timeline
from pipeline.planning.plan import build_plan
from pipeline.render.masters import Clip, build_master
from pipeline.render.sidecars import POSTER_NAME, marker_name, shot_marks
from pipeline.script.loader import parse_script

THREE_SHOTS = """\
version: 1
name: marks
narratives:
  - id: n
    shots:
      - {duration: 4, action: "the lighthouse at dusk"}
      - {duration: 9, action: "Mara climbs the stairs"}
      - {duration: 3, action: "the lamp turns"}
budget: {limit_usd: 20}
output: {transition: crossfade, crossfade_seconds: 0.5, loudness_lufs: null}
"""


def test_marker_names_keep_the_action_on_one_short_line() -> None:
    assert marker_name(2, "Mara\n climbs") == "Shot 2: Mara climbs"
    long = marker_name(1, "x" * 100)
    assert long.endswith("…") and len(long) == len("Shot 1: ") + 60


def test_shot_marks_follow_the_segments_less_the_crossfades(tmp_path: Path) -> None:
    loaded = parse_script(THREE_SHOTS.encode(), file="marks.yaml", base_dir=tmp_path)
    plan = build_plan(loaded.script).narratives[0]
    marks = shot_marks(loaded.script.narratives[0], plan, 0.5)
    assert [m.name for m in marks] == [
        "Shot 1: the lighthouse at dusk",
        "Shot 2: Mara climbs the stairs",
        "Shot 3: the lamp turns",
    ]
    # Whole shots, in order, each starting where the one before ends or (across a join) one
    # crossfade earlier; together they span the master's scripted length.
    assert [m.duration_s for m in marks] == [4, 9, 3]
    assert marks[0].start_s == 0
    assert marks[-1].start_s + marks[-1].duration_s == pytest.approx(plan.master_seconds)


@pytest.mark.slow  # real ffmpeg: a small master stitched
def test_a_master_gets_a_poster_and_a_timeline_in_its_manifest(tmp_path: Path) -> None:
    loaded = parse_script(THREE_SHOTS.encode(), file="marks.yaml", base_dir=tmp_path)
    plan = build_plan(loaded.script)
    clips: list[Clip] = []
    for request in plan.requests_for("draft"):
        path = tmp_path / f"clip-{request.segment}.mp4"
        source = f"testsrc2=s=96x54:r=24:d={request.duration}"
        ffmpeg(["-y", "-f", "lavfi", "-i", source, "-pix_fmt", "yuv420p", str(path)], what="clip")
        clips.append(Clip(request, path, sha256_file(path), f"req-{request.segment}", Decimal("0.5")))
    directory = tmp_path / "masters" / "n" / "default" / "draft"
    outcome = build_master(
        script=loaded.script,
        script_sha256=loaded.sha256,
        run_id="run",
        narrative=loaded.script.narratives[0],
        plan=plan.narratives[0],
        clips=clips,
        directory=directory,
        plan_summary={},
        started_at=datetime.now(UTC),
    )
    assert outcome.delivered
    poster = probe(directory / POSTER_NAME)
    assert poster.video is not None and poster.video.width == 640
    timeline = read_timeline(directory / "master.otio")
    assert [m.name.split(":")[0] for m in timeline.tracks.markers] == ["Shot 1", "Shot 2", "Shot 3"]
    assert timeline.duration().to_seconds() == pytest.approx(outcome.duration_s, abs=1 / 24)
    (video,) = timeline.video_tracks()
    assert [c.metadata["klingflow"]["request_id"] for c in video.find_clips()] == [
        c.request_id for c in clips
    ]
    listed = {f.name for f in load_manifest(directory / "manifest.json").files}
    assert {POSTER_NAME, "master.otio"} <= listed
