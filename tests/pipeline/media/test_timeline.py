"""``master.otio``: the master's cut read back with OpenTimelineIO, against the stitch plan and
the master itself (ffprobe).

OTIO's transition semantics relied on (``in_offset`` borrows from the outgoing clip before the
cut, ``out_offset`` from the incoming clip after it, each clip's handles past its source range):
OpenTimelineIO's ``algorithms/track_algo.py`` (``track_with_expanded_transitions``), used below to
expand each dissolve into the spans it reads.
"""

from __future__ import annotations

from pathlib import Path

import opentimelineio as otio
import pytest

from pipeline.errors import MediaError
from pipeline.media.probe import probe
from pipeline.media.stitch import stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions, StitchPlan
from pipeline.media.timeline import (
    ShotMark,
    build_timeline,
    cut_frames,
    read_timeline,
    write_timeline,
)

pytestmark = pytest.mark.slow  # real ffmpeg stitches (small clips, a few seconds of CPU)

SHOTS = (
    ShotMark(name="Shot 1: the lighthouse at dusk", start_s=0.0, duration_s=2.0),
    ShotMark(name="Shot 2: Mara climbs", start_s=2.0, duration_s=3.0),
    ShotMark(name="Shot 3: the lamp", start_s=5.0, duration_s=4.0),
)


def _stitched(
    clips: list[tuple[Path, float]], out: Path, options: StitchOptions
) -> tuple[StitchPlan, Path, otio.schema.Timeline]:
    result = stitch(
        [ClipInput(path=str(p), scripted_s=s, label=f"segment {i}") for i, (p, s) in enumerate(clips)],
        out / "master.mp4",
        options,
    )
    metadata = [{"segment": i, "clip_sha256": f"{i:064x}"} for i in range(len(clips))]
    timeline = build_timeline(
        result.plan, name="lighthouse/a", master=result.path, shots=SHOTS, clip_metadata=metadata
    )
    path = write_timeline(timeline, out / "master.otio")
    return result.plan, Path(result.path), read_timeline(path)


def _video(timeline: otio.schema.Timeline) -> otio.schema.Track:
    (track,) = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    return track


@pytest.fixture(scope="module")
def crossfaded(
    compatible_clips: list[tuple[Path, float]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[StitchPlan, Path, otio.schema.Timeline]:
    options = StitchOptions(transition="crossfade", crossfade_s=0.5, loudness_lufs=None)
    return _stitched(compatible_clips, tmp_path_factory.mktemp("xfade"), options)


def test_duration_equals_the_masters(crossfaded: tuple[StitchPlan, Path, otio.schema.Timeline]) -> None:
    plan, master, timeline = crossfaded
    probed = probe(master)
    assert probed.video_duration == pytest.approx(timeline.duration().to_seconds(), abs=plan.frame_s / 2)
    assert timeline.duration().to_seconds() == pytest.approx(plan.expected_duration_s, abs=plan.frame_s / 2)
    for track in timeline.tracks:
        assert track.duration() == timeline.duration()


def test_clips_sit_where_the_plan_put_them_with_crossfades_as_dissolves(
    crossfaded: tuple[StitchPlan, Path, otio.schema.Timeline],
) -> None:
    plan, _, timeline = crossfaded
    track = _video(timeline)
    clips = list(track.find_clips(shallow_search=True))
    cuts = cut_frames(plan)
    rate = float(plan.frame_rate)
    assert [c.name for c in clips] == ["segment 0", "segment 1", "segment 2"]
    for k, clip in enumerate(clips):
        placed = track.range_of_child(clip)
        assert placed.start_time.value == cuts[k]  # the plan's start of clip k, in frames
        assert clip.source_range.start_time.value == 0
        assert (
            Path(clip.media_reference.target_url.removeprefix("file://"))
            == Path(plan.clips[k].path).resolve()
        )
        assert clip.metadata["klingflow"]["clip_sha256"] == f"{k:064x}"
    transitions = [t for t in track if isinstance(t, otio.schema.Transition)]
    assert len(transitions) == 2
    # Each dissolve reads the outgoing clip's tail and the incoming clip's head: the spans the
    # plan's crossfade pieces read.
    pieces = [p for p in plan.pieces if p.kind == "crossfade"]
    expanded = otio.algorithms.track_with_expanded_transitions(track)
    for piece, item in zip(pieces, [i for i in expanded if isinstance(i, tuple)], strict=True):
        outgoing, dissolve, incoming = item
        assert dissolve.in_offset.value == 0
        assert dissolve.out_offset.value == piece.frames
        out_span, in_span = piece.spans
        out_clip = plan.clips[out_span.clip]
        assert outgoing.source_range.start_time.value == round(out_clip.take_s * rate) - piece.frames
        assert (
            incoming.source_range.start_time.value == 0 == in_span.first_frame + round(in_span.seek_s * rate)
        )
        assert outgoing.source_range.duration.value == incoming.source_range.duration.value == piece.frames


def test_the_audio_track_follows_the_video_and_markers_name_the_shots(
    crossfaded: tuple[StitchPlan, Path, otio.schema.Timeline],
) -> None:
    plan, _, timeline = crossfaded
    kinds = [t.kind for t in timeline.tracks]
    assert kinds == [otio.schema.TrackKind.Video, otio.schema.TrackKind.Audio]
    video, audio = timeline.tracks
    assert [video.range_of_child(c) for c in video.find_clips(shallow_search=True)] == [
        audio.range_of_child(c) for c in audio.find_clips(shallow_search=True)
    ]
    markers = list(timeline.tracks.markers)
    assert [m.name for m in markers] == [s.name for s in SHOTS]
    rate = float(plan.frame_rate)
    for marker, shot in zip(markers, SHOTS, strict=True):
        assert marker.marked_range.start_time.to_seconds() == pytest.approx(shot.start_s, abs=1 / rate)
    assert timeline.metadata["klingflow"]["master"] == "master.mp4"


def test_a_cut_master_with_a_trimmed_clip_and_a_silent_one(
    mixed_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    plan, master, timeline = _stitched(mixed_clips, tmp_path, StitchOptions(loudness_lufs=None))
    video = _video(timeline)
    clips = list(video.find_clips(shallow_search=True))
    assert not [t for t in video if isinstance(t, otio.schema.Transition)]
    rate = float(plan.frame_rate)
    for clip, planned in zip(clips, plan.clips, strict=True):
        # Re-encoded to its scripted length: a trimmed clip contributes less than it holds.
        assert clip.source_range.duration.to_seconds() == pytest.approx(planned.take_s, abs=1 / rate)
        assert clip.metadata["klingflow"]["trim_s"] == planned.trim_s
    assert plan.clips[3].trim_s > 0
    # The silent clip is a gap in the audio track, of the same length.
    audio = timeline.tracks[1]
    assert isinstance(audio[1], otio.schema.Gap)
    assert audio.range_of_child_at_index(1) == video.range_of_child(clips[1])
    assert probe(master).video_duration == pytest.approx(
        timeline.duration().to_seconds(), abs=plan.frame_s / 2
    )


def test_reading_something_else_is_a_media_error(tmp_path: Path) -> None:
    bad = tmp_path / "master.otio"
    bad.write_text("not json", encoding="utf-8")
    with pytest.raises(MediaError, match="not a readable OpenTimelineIO timeline"):
        read_timeline(bad)
