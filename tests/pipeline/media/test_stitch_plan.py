"""The stitch plan: clips, pieces and crossfades as arithmetic (pure, no ffmpeg run).

The ffmpeg arguments built from a plan are tested in test_stitch_commands.py.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InputError, MediaError
from pipeline.media.probe import FormatInfo, Probe, Stream
from pipeline.media.stitch_plan import (
    ClipInput,
    StitchOptions,
    incompatibilities,
    master_starts,
    plan_stitch,
)


def fake_probe(
    path: str,
    seconds: float,
    *,
    size: tuple[int, int] = (320, 180),
    rate: str = "24/1",
    audio: bool = True,
    extradata: str = "SHA256:aa",
    sar: str = "1:1",
) -> Probe:
    streams = [
        Stream(
            index=0,
            codec_type="video",
            codec_name="h264",
            profile="High",
            width=size[0],
            height=size[1],
            pix_fmt="yuv420p",
            sample_aspect_ratio=sar,
            avg_frame_rate=rate,
            r_frame_rate=rate,
            time_base="1/12288",
            duration=seconds,
            extradata_hash=extradata,
        )
    ]
    if audio:
        streams.append(
            Stream(index=1, codec_type="audio", codec_name="aac", sample_rate=44100, duration=seconds)
        )
    return Probe(
        path=path, format=FormatInfo(format_name="mov,mp4", duration=seconds), streams=tuple(streams)
    )


def clips_and_probes(seconds: list[float], **kwargs: object) -> tuple[list[ClipInput], list[Probe]]:
    clips = [ClipInput(path=f"/clips/c{i}.mp4", scripted_s=s) for i, s in enumerate(seconds)]
    probes = [fake_probe(c.path, s, **kwargs) for c, s in zip(clips, seconds, strict=True)]  # type: ignore[arg-type]
    return clips, probes


def test_identical_clips_are_stream_copied() -> None:
    clips, probes = clips_and_probes([5, 3, 4])
    plan = plan_stitch(clips, probes, StitchOptions())
    assert plan.mode == "copy"
    assert plan.reasons == ()
    assert plan.expected_duration_s == 12
    assert [c.start_s for c in plan.clips] == [0, 5, 8]


def test_reencoding_can_be_forced() -> None:
    clips, probes = clips_and_probes([5, 3])
    plan = plan_stitch(clips, probes, StitchOptions(force_reencode=True))
    assert plan.mode == "reencode"
    assert plan.reasons == ("re-encoding was requested",)


def test_a_different_extradata_forces_reencode_and_says_why() -> None:
    clips, probes = clips_and_probes([5, 3])
    probes[1] = fake_probe(clips[1].path, 3, extradata="SHA256:bb")
    plan = plan_stitch(clips, probes)
    assert plan.mode == "reencode"
    assert any("extradata" in r for r in plan.reasons)


def test_incompatibilities_lists_every_difference() -> None:
    probes = [fake_probe("a", 3), fake_probe("b", 3, size=(180, 320), rate="30/1")]
    problems = incompatibilities(probes)
    assert any("size" in p for p in problems)
    assert any("frame rate" in p for p in problems)
    assert incompatibilities([fake_probe("a", 3), fake_probe("b", 9)]) == []


def test_a_clip_longer_than_scripted_is_trimmed_by_reencoding() -> None:
    clips = [ClipInput(path="a", scripted_s=4), ClipInput(path="b", scripted_s=2)]
    probes = [fake_probe("a", 4), fake_probe("b", 3)]  # the 3 s minimum for a 2 s shot
    plan = plan_stitch(clips, probes)
    assert plan.mode == "reencode"
    assert plan.clips[1].take_s == 2
    assert plan.clips[1].trim_s == pytest.approx(1)
    assert plan.expected_duration_s == 6


def test_a_clip_within_a_frame_of_its_script_is_still_copied() -> None:
    clips = [ClipInput(path="a", scripted_s=5), ClipInput(path="b", scripted_s=5)]
    probes = [fake_probe("a", 5 + 1 / 24), fake_probe("b", 5)]
    plan = plan_stitch(clips, probes)
    assert plan.mode == "copy"
    # In copy mode a clip contributes what its video holds, so audio is built to that length.
    assert plan.clips[0].take_s == pytest.approx(5 + 1 / 24)


def test_a_short_clip_is_padded_when_reencoding() -> None:
    clips = [ClipInput(path="a", scripted_s=5), ClipInput(path="b", scripted_s=5)]
    probes = [fake_probe("a", 4.5), fake_probe("b", 5)]
    plan = plan_stitch(clips, probes)
    assert plan.mode == "reencode"
    assert plan.clips[0].pad_s == pytest.approx(0.5)
    assert plan.expected_duration_s == 10


def test_canvas_and_rate_follow_the_majority_of_clips() -> None:
    clips = [ClipInput(path=str(i), scripted_s=3) for i in range(3)]
    probes = [
        fake_probe("0", 3, size=(180, 320), rate="30/1"),
        fake_probe("1", 3, size=(320, 180)),
        fake_probe("2", 3, size=(320, 180)),
    ]
    plan = plan_stitch(clips, probes)
    assert plan.canvas == (320, 180)
    assert plan.frame_rate == Fraction(24)


def test_canvas_uses_display_size_of_anamorphic_clips_and_stays_even() -> None:
    clips = [ClipInput(path="a", scripted_s=3)]
    plan = plan_stitch(clips, [fake_probe("a", 3, size=(241, 181), sar="4:3")])
    assert plan.canvas == (320, 180)


def test_options_override_canvas_and_rate() -> None:
    clips, probes = clips_and_probes([3, 3])
    plan = plan_stitch(clips, probes, StitchOptions(canvas=(1920, 1080), frame_rate=Fraction(30000, 1001)))
    assert plan.canvas == (1920, 1080)
    assert plan.frame_rate == Fraction(30000, 1001)


@given(
    st.lists(st.integers(min_value=3, max_value=15), min_size=2, max_size=12),
    st.sampled_from([0.25, 0.5, 1.0, 1.5]),
)
def test_crossfade_offsets_and_total_follow_the_arithmetic(seconds: list[int], fade: float) -> None:
    clips, probes = clips_and_probes([float(s) for s in seconds])
    plan = plan_stitch(clips, probes, StitchOptions(transition="crossfade", crossfade_s=fade))
    n = len(seconds)
    assert plan.mode == "reencode"
    assert plan.expected_duration_s == pytest.approx(sum(seconds) - (n - 1) * fade)
    for k, offset in enumerate(plan.xfade_offsets, start=1):
        assert offset == pytest.approx(sum(seconds[:k]) - k * fade)
    assert len(plan.xfade_offsets) == n - 1


def test_master_starts_without_fade_are_running_sums() -> None:
    assert master_starts([3, 4, 5]) == [0, 3, 7]


def test_a_crossfade_longer_than_half_a_clip_is_refused() -> None:
    clips, probes = clips_and_probes([3, 3])
    with pytest.raises(InputError, match="crossfade"):
        plan_stitch(clips, probes, StitchOptions(transition="crossfade", crossfade_s=2))


def test_a_single_clip_has_no_crossfade() -> None:
    clips, probes = clips_and_probes([3])
    plan = plan_stitch(clips, probes, StitchOptions(transition="crossfade"))
    assert plan.transition == "cut"
    assert plan.mode == "copy"


def test_a_clip_without_video_is_refused() -> None:
    audio_only = Probe(
        path="a.m4a",
        format=FormatInfo(format_name="mov", duration=3),
        streams=(Stream(index=0, codec_type="audio", codec_name="aac"),),
    )
    with pytest.raises(MediaError, match="no video"):
        plan_stitch([ClipInput(path="a.m4a", scripted_s=3)], [audio_only])


# --- pieces ----------------------------------------------------------------------------------


@given(
    st.lists(st.integers(min_value=3, max_value=15), min_size=1, max_size=12),
    st.sampled_from([0.25, 0.5, 1.0, 1.5]),
    st.sampled_from([Fraction(24), Fraction(25), Fraction(30000, 1001)]),
    st.booleans(),
)
def test_pieces_tile_the_master_in_whole_frames_and_samples(
    seconds: list[int], fade: float, rate: Fraction, crossfade: bool
) -> None:
    clips, probes = clips_and_probes([float(s) for s in seconds])
    options = StitchOptions(
        transition="crossfade" if crossfade else "cut",
        crossfade_s=fade,
        frame_rate=rate,
        force_reencode=True,
    )
    plan = plan_stitch(clips, probes, options)
    frame = 0
    sample = 0
    for k, piece in enumerate(plan.pieces):
        assert piece.index == k
        assert (piece.start_frame, piece.start_sample) == (frame, sample)
        # Audio follows video exactly: a piece's samples are its frames' samples.
        assert piece.start_sample + piece.samples == round(
            Fraction(piece.start_frame + piece.frames) * 48000 / rate
        )
        frame += piece.frames
        sample += piece.samples
    assert frame == round(plan.expected_duration_s * rate)
    fades = [p for p in plan.pieces if p.kind == "crossfade"]
    assert len(fades) == (len(seconds) - 1 if plan.transition == "crossfade" else 0)
    # A body wholly taken by the crossfades either side of it is no piece at all.
    assert len(plan.pieces) - len(fades) == sum(
        1
        for c in plan.clips
        if c.take_s - plan.crossfade_s * ((c.index > 0) + (c.index < len(seconds) - 1)) > 1e-9
    )
    assert {s.clip for p in plan.pieces for s in p.spans} == set(range(len(seconds)))


def test_crossfade_pieces_fade_a_tail_into_the_next_head() -> None:
    clips, probes = clips_and_probes([4, 3, 5])
    plan = plan_stitch(clips, probes, StitchOptions(transition="crossfade", crossfade_s=0.5))
    kinds = [(p.kind, [s.clip for s in p.spans], p.frames) for p in plan.pieces]
    assert kinds == [
        ("clip", [0], 84),  # 0 .. 3.5 s of clip 0
        ("crossfade", [0, 1], 12),  # its last 0.5 s into clip 1's first
        ("clip", [1], 48),  # 0.5 .. 2.5 s of clip 1
        ("crossfade", [1, 2], 12),
        ("clip", [2], 108),  # 0.5 .. 5 s of clip 2
    ]
    tail, head = plan.pieces[1].spans
    # The tail is read by seeking near it, never from the clip's start.
    assert tail.seek_s == pytest.approx(3.0)
    assert (tail.first_frame, tail.first_sample) == (12, 24000)
    assert (head.seek_s, head.first_frame) == (0, 0)
    body = plan.pieces[2].spans[0]
    assert body.seek_s == pytest.approx(0.5)
    assert body.first_frame == 0


def test_a_padded_clips_tail_seeks_no_later_than_a_second_before_its_end() -> None:
    clips = [ClipInput(path="a", scripted_s=5), ClipInput(path="b", scripted_s=5)]
    probes = [fake_probe("a", 2.0), fake_probe("b", 5)]  # a: 3 s of held last frame
    plan = plan_stitch(clips, probes, StitchOptions(transition="crossfade", crossfade_s=0.5))
    tail = plan.pieces[1].spans[0]
    assert tail.seek_s == pytest.approx(1.0)
    assert tail.first_frame == round((4.5 - 1.0) * 24)
