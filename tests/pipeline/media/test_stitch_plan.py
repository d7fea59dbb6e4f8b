"""The stitch plan and the ffmpeg arguments built from it: pure, no ffmpeg run."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InputError, MediaError
from pipeline.media.loudness import LoudnormMeasurement
from pipeline.media.probe import FormatInfo, Probe, Stream
from pipeline.media.stitch import (
    build_measure_args,
    build_piece_args,
    build_stitch_args,
    concat_list_text,
    piece_list_text,
)
from pipeline.media.stitch_plan import (
    ClipInput,
    StitchOptions,
    StitchPlan,
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


# --- built arguments -------------------------------------------------------------------------


def _joined(args: list[str]) -> str:
    return " ".join(args)


def _graph(args: list[str]) -> str:
    return args[args.index("-filter_complex") + 1]


def _inputs(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "-i"]


def test_copy_pieces_render_only_each_clips_audio_to_its_video_length() -> None:
    clips, probes = clips_and_probes([3, 4])
    probes[1] = fake_probe(clips[1].path, 4, audio=False)
    plan = plan_stitch(clips, probes, StitchOptions(loudness_lufs=None))
    assert plan.mode == "copy"
    first = build_piece_args(plan, plan.pieces[0], "/w")
    assert _inputs(first) == ["/clips/c0.mp4"]
    assert "libx264" not in first
    graph = _graph(first)
    assert "[0:a:0]aresample=48000:async=1:first_pts=0" in graph
    assert "apad=whole_len=144000" in graph
    assert "atrim=end_sample=144000:start_sample=0" in graph
    # One output: the raw PCM of the piece, nothing else mapped.
    assert first[first.index("-map") :] == [
        *("-map", "[s4]", "-f", "f32le", "-ac", "2", "-acodec", "pcm_f32le", "-ar", "48000"),
        "/w/piece-00000.pcm",
    ]
    # The clip without audio gets silence bounded to its length, not an endless source.
    second = _joined(build_piece_args(plan, plan.pieces[1], "/w"))
    assert "-f lavfi -t 4.000000 -i anullsrc=r=48000:cl=stereo" in second
    assert "/clips/c1.mp4" not in second
    assert "atrim=end_sample=192000" in second


def test_the_master_copies_video_from_the_concat_list_and_encodes_the_joined_audio_once() -> None:
    clips, probes = clips_and_probes([3, 4])
    plan = plan_stitch(clips, probes, StitchOptions(loudness_lufs=None))
    args = build_stitch_args(
        plan, "/out/m.mp4", concat_list="/w/video.ffconcat", audio="/w/audio.f32le", srt_path="/w/s.srt"
    )
    text = _joined(args)
    assert "-f concat -safe 0 -i /w/video.ffconcat" in text
    assert "-f f32le -ac 2 -ar 48000 -i /w/audio.f32le" in text
    assert "-f srt -i /w/s.srt" in text
    assert _inputs(args) == ["/w/video.ffconcat", "/w/audio.f32le", "/w/s.srt"]
    assert args[args.index("-vcodec") + 1] == "copy"
    assert args[args.index("-acodec") + 1] == "aac"
    assert args[args.index("-movflags") + 1] == "+faststart"
    assert args[args.index("-c:s") + 1] == "mov_text"
    assert "-filter_complex" not in args  # no loudness target measured: audio is only encoded
    assert args[-1] == "/out/m.mp4"


def test_reencoded_pieces_normalise_each_clip_and_crossfade_two_at_a_time() -> None:
    clips, probes = clips_and_probes([4, 3, 5])
    probes[1] = fake_probe(clips[1].path, 3, size=(180, 320), rate="30/1", audio=False)
    plan = plan_stitch(
        clips, probes, StitchOptions(transition="crossfade", crossfade_s=0.5, loudness_lufs=None)
    )
    fade = build_piece_args(plan, plan.pieces[1], "/w")
    graph = _graph(fade)
    # The tail of clip 0 (seeked, then 12 frames skipped) fades into the head of clip 1.
    assert "-ss 2.999900 -i /clips/c0.mp4 -i /clips/c1.mp4" in _joined(fade)
    assert graph.count("scale=320:180:force_original_aspect_ratio=decrease") == 2
    assert graph.count("setsar=1") == 2
    assert graph.count("fps=24") == 2
    assert "trim=end_frame=24:start_frame=12" in graph
    assert "trim=end_frame=12:start_frame=0" in graph
    assert "xfade=duration=0.500000:offset=0:transition=fade" in graph
    assert "atrim=end_sample=48000:start_sample=24000" in graph
    assert "acrossfade=ns=24000" in graph
    # Clip 1 has no audio: bounded silence for the length of the piece.
    assert "-f lavfi -t 0.500000 -i anullsrc=r=48000:cl=stereo" in _joined(fade)
    # Two outputs: H.264 video of the piece, and its raw PCM audio.
    assert fade[fade.index("-vcodec") + 1] == "libx264"
    assert fade[fade.index("-pix_fmt") + 1] == "yuv420p"
    assert fade[fade.index("-preset") + 1] == "veryfast"
    assert fade[fade.index("-g") + 1] == "48"
    assert fade[fade.index("/w/piece-00001.mp4") - 2 : fade.index("/w/piece-00001.mp4")] == [
        "-vcodec",
        "libx264",
    ]
    assert fade[-1] == "/w/piece-00001.pcm"
    assert fade[fade.index("-acodec") + 1] == "pcm_f32le"
    body = build_piece_args(plan, plan.pieces[2], "/w")
    assert "xfade" not in _graph(body)
    assert _inputs(body) == ["/clips/c1.mp4", "anullsrc=r=48000:cl=stereo"]
    assert "trim=end_frame=48:start_frame=0" in _graph(body)


def test_every_reencoded_piece_uses_the_same_encoder_settings() -> None:
    clips, probes = clips_and_probes([4, 3, 5])
    probes[1] = fake_probe(clips[1].path, 3, size=(180, 320), rate="30/1")
    plan = plan_stitch(clips, probes, StitchOptions(transition="crossfade", crossfade_s=0.5))

    def encoder(args: list[str]) -> list[str]:
        out = args.index(f"/w/piece-{args[-1][-9:-4]}.mp4")
        return args[args.index("-map") + 2 : out]

    settings = {tuple(encoder(build_piece_args(plan, p, "/w"))) for p in plan.pieces}
    assert settings == {
        (
            "-f",
            "mp4",
            "-crf",
            "18",
            "-g",
            "48",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "veryfast",
            "-vcodec",
            "libx264",
        )
    }


def test_a_trimmed_clip_is_cut_to_its_scripted_frames_and_a_short_one_held() -> None:
    clips = [ClipInput(path="/c/long.mp4", scripted_s=3), ClipInput(path="/c/short.mp4", scripted_s=3)]
    probes = [fake_probe(clips[0].path, 5), fake_probe(clips[1].path, 2)]
    plan = plan_stitch(clips, probes, StitchOptions(loudness_lufs=None))
    assert plan.mode == "reencode"
    long_graph = _graph(build_piece_args(plan, plan.pieces[0], "/w"))
    assert "trim=end_frame=72:start_frame=0" in long_graph
    assert "atrim=end_sample=144000:start_sample=0" in long_graph
    short_graph = _graph(build_piece_args(plan, plan.pieces[1], "/w"))
    # 1 s short: 24 frames of shortfall held, plus a second of margin.
    assert "tpad=stop=48:stop_mode=clone" in short_graph
    assert "apad=whole_len=144000" in short_graph


def test_piece_list_gives_each_piece_its_exact_frames() -> None:
    clips, probes = clips_and_probes([4, 3])
    plan = plan_stitch(
        clips,
        probes,
        StitchOptions(transition="crossfade", crossfade_s=0.5, frame_rate=Fraction(30000, 1001)),
    )
    text = piece_list_text(plan, "/w")
    assert text.startswith("ffconcat version 1.0\nfile '/w/piece-00000.mp4'\n")
    durations = [float(line.split()[1]) for line in text.splitlines() if line.startswith("duration")]
    assert durations == pytest.approx(
        [float(p.frames * Fraction(1001, 30000)) for p in plan.pieces], abs=1e-6
    )


def test_loudness_is_measured_on_the_joined_audio_then_applied_linearly() -> None:
    clips, probes = clips_and_probes([3, 3])
    plan = plan_stitch(clips, probes, StitchOptions(loudness_lufs=-16))
    measure = build_measure_args(plan, "/w/audio.f32le")
    # Pass 1 reads the PCM only: no clip, no video.
    assert _inputs(measure) == ["/w/audio.f32le"]
    assert "print_format=json" in _graph(measure)
    assert measure[-3:] == ["-f", "null", "-"]
    measured = LoudnormMeasurement(
        input_i=-23.5, input_tp=-9.1, input_lra=3.2, input_thresh=-33.6, target_offset=0.2
    )
    args = build_stitch_args(plan, "/o.mp4", concat_list="/l", audio="/w/audio.f32le", measured=measured)
    graph = _graph(args)
    assert graph.startswith("[1:a]loudnorm=")
    assert "measured_I=-23.5" in graph
    assert "linear=true" in graph
    assert "I=-16" in graph


def test_measuring_without_a_target_is_a_programming_error() -> None:
    clips, probes = clips_and_probes([3])
    with pytest.raises(ValueError, match="loudness"):
        build_measure_args(plan_stitch(clips, probes, StitchOptions(loudness_lufs=None)), "/a")


def test_concat_list_quotes_paths_and_gives_video_durations() -> None:
    clips = [ClipInput(path="/clips/it's.mp4", scripted_s=3)]
    plan = plan_stitch(clips, [fake_probe(clips[0].path, 3.0)])
    text = concat_list_text(plan)
    assert "file '/clips/it'\\''s.mp4'" in text
    assert "duration 3.000000" in text


def test_a_clip_crossfading_into_itself_is_opened_once_and_split() -> None:
    # Clips a second long are read from the start on both sides of the crossfade.
    clips = [ClipInput(path="/c/a.mp4", scripted_s=1), ClipInput(path="/c/a.mp4", scripted_s=1)]
    probes = [fake_probe("/c/a.mp4", 1, audio=False), fake_probe("/c/a.mp4", 1, audio=False)]
    plan = plan_stitch(clips, probes, StitchOptions(transition="crossfade", crossfade_s=0.25))
    fade = plan.pieces[1]
    assert [s.seek_s for s in fade.spans] == [0, 0]
    args = build_piece_args(plan, fade, "/w")
    assert args.count("/c/a.mp4") == 1
    assert "split=2" in _graph(args)
    # Silence faded into silence is one bounded source, not split into an acrossfade: ffmpeg 5.1
    # wrote no sample at all from that graph (issue 12), failing every silent crossfaded master.
    assert args.count("anullsrc=r=48000:cl=stereo") == 1
    assert "asplit" not in _graph(args) and "acrossfade" not in _graph(args)
    assert "atrim=end_sample=12000" in _graph(args)


# --- memory does not grow with the master ------------------------------------------------------


def _every_command(plan: StitchPlan) -> list[list[str]]:
    pieces = [build_piece_args(plan, piece, "/w") for piece in plan.pieces]
    measured = LoudnormMeasurement(
        input_i=-23.5, input_tp=-9.1, input_lra=3.2, input_thresh=-33.6, target_offset=0.2
    )
    return [
        *pieces,
        build_measure_args(plan, "/w/audio.f32le"),
        build_stitch_args(
            plan,
            "/o.mp4",
            concat_list="/w/v.ffconcat",
            audio="/w/audio.f32le",
            srt_path="/w/s.srt",
            measured=measured,
        ),
    ]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(StitchOptions(), id="copy"),
        pytest.param(StitchOptions(force_reencode=True), id="reencode"),
        pytest.param(StitchOptions(transition="crossfade", crossfade_s=0.5), id="crossfade"),
    ],
)
def test_no_command_opens_more_inputs_as_clips_are_added(options: StitchOptions) -> None:
    """ffmpeg's memory follows what one command opens: it must not depend on the clip count."""

    def widest(count: int) -> tuple[int, int, int]:
        clips, probes = clips_and_probes([15.0] * count)
        for k in range(1, count, 3):  # every third clip has no audio: a silence input
            probes[k] = fake_probe(clips[k].path, 15.0, audio=False)
        plan = plan_stitch(clips, probes, options)
        commands = _every_command(plan)
        inputs = max(len(_inputs(args)) for args in commands)
        clip_inputs = max(sum(i.startswith("/clips/") for i in _inputs(args)) for args in commands)
        return inputs, clip_inputs, len(commands)

    few, many = widest(3), widest(30)
    assert few[:2] == many[:2]
    assert many[0] <= 4  # two clips and two bounded silences, at most
    assert many[1] <= 2  # at most two decoders of clips at a time
    assert many[2] > few[2]  # the work is spread over more commands instead
