"""pipeline.media.stitch_commands: the ffmpeg arguments built from a stitch plan (pure, no ffmpeg run)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pipeline.media.loudness import LevelPlan, Loudness, plan_level
from pipeline.media.stitch_commands import (
    MAX_CLIPS_PER_COMMAND,
    audio_batches,
    build_audio_args,
    build_limit_args,
    build_measure_args,
    build_piece_args,
    build_stitch_args,
    concat_list_text,
    piece_list_text,
)
from pipeline.media.stitch_plan import ClipInput, StitchOptions, StitchPlan, plan_stitch

from .test_stitch_plan import clips_and_probes, fake_probe

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


def _level(peak: float) -> LevelPlan:
    level = plan_level(Loudness(integrated_lufs=-23.5, loudness_range_lu=3.2, true_peak_dbtp=peak), -16, -1.5)
    assert level is not None
    return level


def test_loudness_is_measured_on_the_joined_audio_then_applied_as_one_gain() -> None:
    clips, probes = clips_and_probes([3, 3])
    plan = plan_stitch(clips, probes, StitchOptions(loudness_lufs=-16))
    measure = build_measure_args("/w/audio.f32le")
    # The measurement reads the PCM only: no clip, no video, and no loudnorm pass.
    assert _inputs(measure) == ["/w/audio.f32le"]
    assert "ebur128=peak=true" in _graph(measure)
    assert "loudnorm" not in _graph(measure)
    assert measure[-3:] == ["-f", "null", "-"]
    level = _level(-12.0)
    args = build_stitch_args(plan, "/o.mp4", concat_list="/l", audio="/w/audio.f32le", gain_db=level.gain_db)
    assert _graph(args) == "[1:a]volume=7.50dB[s0]"
    assert "ebur128" not in _joined(args)  # a linear gain: the master's loudness follows from it


def test_a_gain_that_would_clip_the_peak_is_limited_on_the_pcm_and_measured() -> None:
    level = _level(-8.0)  # +7.5 dB would put the peak at -0.5 dBTP, over the -1.5 ceiling
    assert level.limit and level.expected is None
    args = build_limit_args("/w/audio.f32le", "/w/limited.f32le", gain_db=level.gain_db, true_peak_db=-1.5)
    assert _inputs(args) == ["/w/audio.f32le"]
    graph = _graph(args)
    # Gain, then a lookahead limiter at 4 × 48 kHz (inter-sample peaks), delay compensated, under
    # the ceiling less the AAC margin (-1.8 dBFS = 0.8128), measured on the way out.
    assert graph.startswith("[0:a]volume=7.50dB[s0];[s0]aresample=192000[s1];[s1]alimiter=")
    assert "latency=true" in graph and "level=false" in graph and "limit=0.8128" in graph
    assert "aresample=48000" in graph and "ebur128=peak=true" in graph
    assert "/w/limited.f32le" in args and args[-3:] == ["-f", "null", "-"]


def test_a_master_of_silent_clips_gets_exact_silence_and_no_pcm() -> None:
    clips, probes = clips_and_probes([3, 4])
    probes = [fake_probe(c.path, p.video_duration, audio=False) for c, p in zip(clips, probes, strict=True)]
    plan = plan_stitch(clips, probes, StitchOptions())
    args = build_stitch_args(plan, "/o.mp4", concat_list="/l", audio=None)
    assert _inputs(args) == ["/l", "anullsrc=r=48000:cl=stereo"]
    assert "atrim=end_sample=336000" in _graph(args)


def test_copy_audio_is_decoded_in_commands_of_a_bounded_number_of_clips() -> None:
    count = MAX_CLIPS_PER_COMMAND + 3
    clips, probes = clips_and_probes([3.0] * count)
    probes[1] = fake_probe(clips[1].path, 3.0, audio=False)
    plan = plan_stitch(clips, probes, StitchOptions())
    batches = audio_batches(plan)
    assert [len(b) for b in batches] == [MAX_CLIPS_PER_COMMAND, 3]
    first = build_audio_args(plan, batches[0], "/w/a0.pcm", measure=True)
    assert len(_inputs(first)) == MAX_CLIPS_PER_COMMAND
    assert "anullsrc" in _inputs(first)[1]  # the clip without audio is bounded silence
    graph = _graph(first)
    assert f"concat=a=1:n={MAX_CLIPS_PER_COMMAND}:v=0" in graph
    assert "ebur128=peak=true" in graph  # measured as it is decoded
    assert "/w/a0.pcm" in first
    last = build_audio_args(plan, batches[1], "/w/a1.pcm", measure=False)
    assert "ebur128" not in _joined(last)
    assert _inputs(last) == [c.path for c in clips[MAX_CLIPS_PER_COMMAND:]]


def test_a_clip_used_twice_in_one_audio_command_is_opened_once() -> None:
    clips = [ClipInput(path="/c/a.mp4", scripted_s=3), ClipInput(path="/c/a.mp4", scripted_s=3)]
    plan = plan_stitch(clips, [fake_probe("/c/a.mp4", 3), fake_probe("/c/a.mp4", 3)])
    args = build_audio_args(plan, plan.pieces, "/w/a.pcm", measure=False)
    assert _inputs(args) == ["/c/a.mp4"]
    assert "asplit=2" in _graph(args)


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
    if plan.mode == "copy":
        rendered = [build_audio_args(plan, batch, "/w/a.pcm", measure=True) for batch in audio_batches(plan)]
    else:
        rendered = [build_piece_args(plan, piece, "/w") for piece in plan.pieces]
    return [
        *rendered,
        build_measure_args("/w/audio.f32le"),
        build_stitch_args(
            plan,
            "/o.mp4",
            concat_list="/w/v.ffconcat",
            audio="/w/audio.f32le",
            srt_path="/w/s.srt",
            gain_db=3.0,
        ),
        build_limit_args("/w/audio.f32le", "/w/l.f32le", gain_db=9.0, true_peak_db=-1.5),
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

    few, many = widest(2 * MAX_CLIPS_PER_COMMAND), widest(5 * MAX_CLIPS_PER_COMMAND)
    assert few[:2] == many[:2]
    if options.force_reencode or options.transition == "crossfade":
        assert many[0] <= 4  # two clips and two bounded silences, at most
        assert many[1] <= 2  # at most two decoders of clips at a time
    else:  # copy mode decodes only audio, a bounded batch of clips per command
        assert many[0] <= MAX_CLIPS_PER_COMMAND
    assert many[2] > few[2]  # the work is spread over more commands instead
