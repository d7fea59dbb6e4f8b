"""The stitch plan and the ffmpeg arguments built from it: pure, no ffmpeg run."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InputError, MediaError
from pipeline.media.loudness import LoudnormMeasurement
from pipeline.media.probe import FormatInfo, Probe, Stream
from pipeline.media.stitch import build_measure_args, build_stitch_args, concat_list_text
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


# --- built arguments -------------------------------------------------------------------------


def _joined(args: list[str]) -> str:
    return " ".join(args)


def test_copy_args_copy_video_from_the_concat_list_and_rebuild_audio() -> None:
    clips, probes = clips_and_probes([3, 4])
    probes[1] = fake_probe(clips[1].path, 4, audio=False)
    plan = plan_stitch(clips, probes, StitchOptions(loudness_lufs=None))
    args = build_stitch_args(plan, "/out/m.mp4", concat_list="/tmp/list.ffconcat", srt_path="/tmp/s.srt")
    text = _joined(args)
    assert plan.mode == "copy"
    assert "-f concat -safe 0 -i /tmp/list.ffconcat" in text
    assert args[args.index("-vcodec") + 1] == "copy"
    assert args[args.index("-movflags") + 1] == "+faststart"
    assert args[args.index("-c:s") + 1] == "mov_text"
    assert "-f srt -i /tmp/s.srt" in text
    # The clip without audio gets silence bounded to its length, not an endless source.
    assert "-f lavfi -t 4.000000 -i anullsrc=r=48000:cl=stereo" in text
    graph = args[args.index("-filter_complex") + 1]
    assert "apad=whole_dur=3.000000" in graph
    assert "atrim=end=4.000000" in graph
    assert "concat=a=1:n=2:v=0" in graph
    assert "loudnorm" not in graph
    assert args[-1] == "/out/m.mp4"


def test_copy_mode_needs_its_concat_list() -> None:
    clips, probes = clips_and_probes([3])
    with pytest.raises(ValueError, match="concat list"):
        build_stitch_args(plan_stitch(clips, probes), "/out/m.mp4")


def test_reencode_args_normalise_every_clip_and_crossfade_at_the_offsets() -> None:
    clips, probes = clips_and_probes([4, 3, 5])
    probes[1] = fake_probe(clips[1].path, 3, size=(180, 320), rate="30/1")
    plan = plan_stitch(
        clips, probes, StitchOptions(transition="crossfade", crossfade_s=0.5, loudness_lufs=None)
    )
    args = build_stitch_args(plan, "/out/m.mp4")
    graph = args[args.index("-filter_complex") + 1]
    assert graph.count("scale=320:180:force_original_aspect_ratio=decrease") == 3
    assert graph.count("setsar=1") == 3
    assert graph.count("fps=24") == 3
    assert "xfade=duration=0.500000:offset=3.500000:transition=fade" in graph
    assert "xfade=duration=0.500000:offset=6.000000:transition=fade" in graph
    assert graph.count("acrossfade=d=0.500000") == 2
    assert args[args.index("-vcodec") + 1] == "libx264"
    assert args[args.index("-pix_fmt") + 1] == "yuv420p"
    assert args[args.index("-ar") + 1] == "48000"


def test_loudness_is_measured_then_applied_linearly() -> None:
    clips, probes = clips_and_probes([3, 3])
    plan = plan_stitch(clips, probes, StitchOptions(loudness_lufs=-16))
    measure = build_measure_args(plan)
    assert "print_format=json" in measure[measure.index("-filter_complex") + 1]
    assert measure[-3:] == ["-f", "null", "-"]
    measured = LoudnormMeasurement(
        input_i=-23.5, input_tp=-9.1, input_lra=3.2, input_thresh=-33.6, target_offset=0.2
    )
    args = build_stitch_args(plan, "/o.mp4", concat_list="/l", measured=measured)
    graph = args[args.index("-filter_complex") + 1]
    assert "measured_I=-23.5" in graph
    assert "linear=true" in graph
    assert "I=-16" in graph


def test_measuring_without_a_target_is_a_programming_error() -> None:
    clips, probes = clips_and_probes([3])
    with pytest.raises(ValueError, match="loudness"):
        build_measure_args(plan_stitch(clips, probes, StitchOptions(loudness_lufs=None)))


def test_concat_list_quotes_paths_and_gives_video_durations() -> None:
    clips = [ClipInput(path="/clips/it's.mp4", scripted_s=3)]
    plan = plan_stitch(clips, [fake_probe(clips[0].path, 3.0)])
    text = concat_list_text(plan)
    assert "file '/clips/it'\\''s.mp4'" in text
    assert "duration 3.000000" in text


def test_a_clip_used_twice_is_opened_once_and_split() -> None:
    clips = [ClipInput(path="/c/a.mp4", scripted_s=3), ClipInput(path="/c/a.mp4", scripted_s=3)]
    probes = [fake_probe("/c/a.mp4", 3, audio=False), fake_probe("/c/a.mp4", 3, audio=False)]
    plan = plan_stitch(clips, probes, StitchOptions(force_reencode=True, loudness_lufs=None))
    args = build_stitch_args(plan, "/o.mp4")
    assert args.count("/c/a.mp4") == 1
    graph = args[args.index("-filter_complex") + 1]
    assert "split=2" in graph
    # Two equally long silences are one bounded source, split too.
    assert args.count("anullsrc=r=48000:cl=stereo") == 1
    assert "asplit=2" in graph
