"""The ffmpeg commands of a stitch plan, built as data (pure: nothing here runs ffmpeg).

When re-encoding, one command per :class:`~pipeline.media.stitch_plan.Piece` renders its video and
its audio as raw PCM (:func:`build_piece_args`). In copy mode only audio is rendered, up to
``MAX_CLIPS_PER_COMMAND`` clips per command (:func:`build_audio_args`): each clip's audio decoded
once, padded or trimmed to its video's length, and (when one command holds the whole master)
measured by ``ebur128`` on the way. The concat-demuxer lists join the video
(:func:`concat_list_text`, :func:`piece_list_text`); :func:`build_measure_args` measures joined PCM
otherwise; :func:`build_limit_args` limits the peaks when the gain needs it; and one command muxes
the master (:func:`build_stitch_args`), applying the level with one ``volume``.
:mod:`pipeline.media.stitch` runs them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import ffmpeg as ffmpeg_builder

from pipeline.media.command import to_args
from pipeline.media.loudness import limiter_filters
from pipeline.media.stitch_plan import SAMPLE_RATE, ClipPlan, Piece, Span, StitchPlan

#: Keyframe every two seconds in re-encoded masters, so editors and players seek quickly.
KEYFRAME_INTERVAL_S = 2
#: Raw PCM of every piece and of the joined audio: 32-bit float keeps a crossfade's sum unclipped.
PCM_FORMAT = "f32le"
PCM_CHANNELS = 2
PCM_SAMPLE_BYTES = 4
#: Frames of the last picture held past a span's end, so its trim always has a frame to end on.
HOLD_MARGIN_S = 1.0
#: Input seeks land this much before the span's first frame so that frame survives the rounding
#: of the seek time (a frame exactly at the seek point could otherwise be dropped).
SEEK_LEAD_S = 1e-4
#: Clips one copy-mode audio command opens at most: each open input costs ffmpeg ~2 MiB, so a
#: long master is split over several commands rather than growing one (measured: 10 clips 77 MiB,
#: 40 clips 131 MiB of peak RSS in one command).
MAX_CLIPS_PER_COMMAND = 16


def _ffconcat(entries: Sequence[tuple[str | Path, float]]) -> str:
    lines: list[str] = ["ffconcat version 1.0"]
    for path, duration in entries:
        quoted = str(Path(path).resolve()).replace("'", "'\\''")
        lines += [f"file '{quoted}'", f"duration {duration:.6f}"]
    return "\n".join(lines) + "\n"


def concat_list_text(plan: StitchPlan) -> str:
    """The concat-demuxer list for copy mode, with each clip's video length as its ``duration``.

    Giving the duration makes the next clip start where this clip's *video* ends, even when its
    audio track runs longer (the container duration would follow the audio).
    """
    return _ffconcat([(clip.path, clip.take_s) for clip in plan.clips])


def piece_paths(work: str | Path, piece: Piece) -> tuple[Path, Path]:
    """Where a piece's video (MP4, re-encoding only) and raw PCM audio are written in ``work``."""
    stem = Path(work) / f"piece-{piece.index:05d}"
    return stem.with_suffix(".mp4"), stem.with_suffix(".pcm")


def piece_list_text(plan: StitchPlan, work: str | Path) -> str:
    """The concat-demuxer list of the re-encoded pieces, each lasting exactly its frames."""
    return _ffconcat([(piece_paths(work, p)[0], float(p.frames / plan.frame_rate)) for p in plan.pieces])


def _fan_out(bases: Sequence[tuple[Hashable, Any]], split_filter: str) -> list[Any]:
    """One stream per use, splitting a source that serves several.

    ffmpeg-python merges identical nodes: the same input (or two equally long silences) used twice
    would become one node feeding two chains, which it refuses. Splitting the shared source gives
    each use its own branch, and the input is still opened only once.
    """
    uses = Counter(key for key, _ in bases)
    splits: dict[Hashable, Any] = {}
    taken: Counter[Hashable] = Counter()
    streams: list[Any] = []
    for key, base in bases:
        if uses[key] == 1:
            streams.append(base)
            continue
        if key not in splits:
            splits[key] = base.filter_multi_output(split_filter, uses[key])
        streams.append(splits[key].stream(taken[key]))
        taken[key] += 1
    return streams


def _seconds(value: float) -> str:
    return f"{value:.6f}"


def _span_input(plan: StitchPlan, span: Span) -> tuple[Hashable, Any]:
    clip = plan.clips[span.clip]
    path = str(Path(clip.path).resolve())
    if span.seek_s > 0:
        seek = max(0.0, span.seek_s - SEEK_LEAD_S)
        return (path, seek), ffmpeg_builder.input(path, ss=_seconds(seek))
    return (path, 0.0), ffmpeg_builder.input(path)


def _audio_piece(clip: ClipPlan, span: Span, samples: int, stream: Any) -> Any:
    """``samples`` of one clip's audio from ``span``, as 48 kHz stereo (silence without audio)."""
    if clip.has_audio:
        # async + first_pts: fill any gap at the start or inside with silence, keeping sync.
        stream = stream.filter("aresample", SAMPLE_RATE, **{"async": 1, "first_pts": 0})
    end = span.first_sample + samples
    return (
        stream.filter("aformat", sample_fmts="flt", sample_rates=SAMPLE_RATE, channel_layouts="stereo")
        .filter("apad", whole_len=end)
        .filter("atrim", start_sample=span.first_sample, end_sample=end)
        .filter("asetpts", "PTS-STARTPTS")
    )


def _video_piece(plan: StitchPlan, clip: ClipPlan, span: Span, frames: int, stream: Any) -> Any:
    """``frames`` of one clip's video from ``span``, on the plan's canvas at its constant rate."""
    width, height = plan.canvas
    stream = stream.filter("setpts", "PTS-STARTPTS")
    if clip.sar != 1:
        # Anamorphic pixels: make them square first, so the fit below keeps the picture's shape.
        stream = stream.filter("scale", "trunc(iw*sar/2)*2", "ih")
    stream = (
        stream.filter("scale", width, height, force_original_aspect_ratio="decrease")
        .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black")
        .filter("setsar", 1)
        .filter("fps", str(plan.frame_rate))
        .filter("format", "yuv420p")
    )
    # Hold the last frame past the end of the source (over any shortfall, plus a margin) so the
    # trim always has its frames, whatever the probe and the rate conversion rounded to.
    end = span.first_frame + frames
    available = (clip.source_s - span.seek_s) * plan.frame_rate
    hold = max(0, end - int(available)) + round(HOLD_MARGIN_S * plan.frame_rate)
    return (
        stream.filter("tpad", stop_mode="clone", stop=hold)
        .filter("trim", start_frame=span.first_frame, end_frame=end)
        .filter("setpts", "PTS-STARTPTS")
    )


def _silence(samples: int) -> Any:
    """Exactly ``samples`` of 48 kHz stereo float silence (a bounded source: it ends)."""
    source = ffmpeg_builder.input(
        f"anullsrc=r={SAMPLE_RATE}:cl=stereo", f="lavfi", t=_seconds(samples / SAMPLE_RATE)
    )
    return (
        source.filter("aformat", sample_fmts="flt", sample_rates=SAMPLE_RATE, channel_layouts="stereo")
        .filter("apad", whole_len=samples)
        .filter("atrim", end_sample=samples)
        .filter("asetpts", "PTS-STARTPTS")
    )


def _piece_video(plan: StitchPlan, piece: Piece, opened: Sequence[tuple[Hashable, Any]]) -> Any:
    """The piece's video: one span's frames, or two spans joined by ``xfade``."""
    bases = [(key, node["v:0"]) for key, node in opened]
    videos = [
        _video_piece(plan, plan.clips[span.clip], span, piece.frames, stream)
        for span, stream in zip(piece.spans, _fan_out(bases, "split"), strict=True)
    ]
    if piece.kind != "crossfade":
        return videos[0]
    return ffmpeg_builder.filter(
        videos,
        "xfade",
        transition="fade",
        duration=_seconds(float(piece.frames / plan.frame_rate)),
        offset=0,
    )


def _piece_streams(plan: StitchPlan, piece: Piece, *, with_video: bool) -> tuple[Any | None, Any]:
    """The piece's video (None when not rendered) and audio streams."""
    opened = [_span_input(plan, span) for span in piece.spans]
    video = _piece_video(plan, piece, opened) if with_video else None
    if not any(plan.clips[span.clip].has_audio for span in piece.spans):
        # Silence on both sides of a crossfade is silence: one bounded source, no acrossfade. (One
        # source split into both inputs of acrossfade wrote nothing at all with ffmpeg 5.1, which
        # failed every crossfaded master of silent clips.)
        return video, _silence(piece.samples)
    audio_bases: list[tuple[Hashable, Any]] = []
    for span, (key, node) in zip(piece.spans, opened, strict=True):
        clip = plan.clips[span.clip]
        if clip.has_audio:
            audio_bases.append((key, node["a:0"]))
        else:
            # A clip without audio gets silence bounded to the piece (an endless source never ends).
            seconds = _seconds(piece.samples / SAMPLE_RATE)
            silence = ffmpeg_builder.input(f"anullsrc=r={SAMPLE_RATE}:cl=stereo", f="lavfi", t=seconds)
            audio_bases.append((("silence", seconds), silence))
    audios = [
        _audio_piece(plan.clips[span.clip], span, piece.samples, stream)
        for span, stream in zip(piece.spans, _fan_out(audio_bases, "asplit"), strict=True)
    ]
    audio = audios[0]
    if piece.kind == "crossfade":
        # Both sides are exactly ``samples`` long, so the fade spans the whole piece.
        audio = ffmpeg_builder.filter(audios, "acrossfade", ns=piece.samples)
    return video, audio


def _pcm_output(stream: Any, path: str | Path) -> Any:
    return ffmpeg_builder.output(
        stream, str(path), f=PCM_FORMAT, acodec=f"pcm_{PCM_FORMAT}", ar=SAMPLE_RATE, ac=PCM_CHANNELS
    )


def build_piece_args(plan: StitchPlan, piece: Piece, work: str | Path) -> list[str]:
    """The ffmpeg arguments that render one piece into ``work`` (see :func:`piece_paths`).

    Its audio always, as raw PCM of exactly ``piece.samples``; its video (``piece.frames`` frames
    of H.264, the same encoder settings for every piece) only when the plan re-encodes. Opens at
    most the two clips of a crossfade.
    """
    video_path, audio_path = piece_paths(work, piece)
    video, audio = _piece_streams(plan, piece, with_video=plan.mode == "reencode")
    outputs = [_pcm_output(audio, audio_path)]
    if video is not None:
        opts = plan.options
        outputs.insert(
            0,
            ffmpeg_builder.output(
                video,
                str(video_path),
                vcodec="libx264",
                preset=opts.x264_preset,
                crf=opts.x264_crf,
                pix_fmt="yuv420p",
                g=max(1, round(KEYFRAME_INTERVAL_S * plan.frame_rate)),
                f="mp4",
            ),
        )
    node = outputs[0] if len(outputs) == 1 else ffmpeg_builder.merge_outputs(*outputs)
    return to_args(node)


def _pcm_input(path: str | Path) -> Any:
    return ffmpeg_builder.input(str(path), f=PCM_FORMAT, ar=SAMPLE_RATE, ac=PCM_CHANNELS)


def _ebur128_output(stream: Any) -> Any:
    """An output that measures ``stream`` (``ebur128``, true peak) and writes nothing."""
    return ffmpeg_builder.output(stream.filter("ebur128", peak="true"), "-", f="null")


def _measured_too(stream: Any, make_output: Any, measure: bool) -> Any:
    """``make_output(stream)``, and with ``measure`` the same audio into ebur128 as well."""
    if not measure:
        return make_output(stream)
    branches = stream.filter_multi_output("asplit", 2)
    return ffmpeg_builder.merge_outputs(make_output(branches.stream(0)), _ebur128_output(branches.stream(1)))


def audio_batches(plan: StitchPlan) -> list[tuple[Piece, ...]]:
    """The copy-mode pieces grouped, in order, into commands of ``MAX_CLIPS_PER_COMMAND`` clips."""
    pieces = plan.pieces
    return [pieces[i : i + MAX_CLIPS_PER_COMMAND] for i in range(0, len(pieces), MAX_CLIPS_PER_COMMAND)]


def batch_path(work: str | Path, batch: int) -> Path:
    """Where the raw PCM of copy-mode audio batch ``batch`` is written in ``work``."""
    return Path(work) / f"audio-{batch:05d}.pcm"


def build_audio_args(
    plan: StitchPlan, pieces: Sequence[Piece], out: str | Path, *, measure: bool
) -> list[str]:
    """The audio of consecutive copy-mode ``pieces`` as one raw PCM file ``out``; with ``measure``,
    ebur128 reads the same decoded samples (the clips' own audio, no second decode).

    Each clip's audio is decoded once and made exactly as long as its piece (silence for a clip
    without audio); the pieces are joined by the ``concat`` filter, sample-exact.
    """
    bases: list[tuple[Hashable, Any]] = []
    for piece in pieces:
        span = piece.spans[0]
        if plan.clips[span.clip].has_audio:
            key, node = _span_input(plan, span)
            bases.append((key, node["a:0"]))
        else:
            seconds = _seconds(piece.samples / SAMPLE_RATE)
            silence = ffmpeg_builder.input(f"anullsrc=r={SAMPLE_RATE}:cl=stereo", f="lavfi", t=seconds)
            bases.append((("silence", seconds), silence))
    # A file used twice (or two equal silences) is opened once and split: see _fan_out.
    audios = [
        _audio_piece(plan.clips[piece.spans[0].clip], piece.spans[0], piece.samples, stream)
        for piece, stream in zip(pieces, _fan_out(bases, "asplit"), strict=True)
    ]
    joined = audios[0] if len(audios) == 1 else ffmpeg_builder.concat(*audios, v=0, a=1)
    return to_args(_measured_too(joined, lambda s: _pcm_output(s, out), measure))


def build_measure_args(audio: str | Path) -> list[str]:
    """``ebur128`` (integrated loudness, true peak) over the joined PCM ``audio``; writes nothing.

    Reads the master's audio before it is encoded, and nothing else: no video is demuxed.
    """
    return to_args(_ebur128_output(_pcm_input(audio)["a"]), overwrite=False)


def build_limit_args(audio: str | Path, out: str | Path, *, gain_db: float, true_peak_db: float) -> list[str]:
    """Joined PCM ``audio`` raised by ``gain_db`` and limited under ``true_peak_db`` into PCM
    ``out``, measured by ebur128 on the way (the limited level is not the source's plus the gain)."""
    limited = limiter_filters(_pcm_input(audio)["a"], gain_db, true_peak_db, SAMPLE_RATE)
    return to_args(_measured_too(limited, lambda s: _pcm_output(s, out), True))


def build_stitch_args(
    plan: StitchPlan,
    out_path: str | Path,
    *,
    concat_list: str | Path,
    audio: str | Path | None,
    srt_path: str | Path | None = None,
    gain_db: float | None = None,
) -> list[str]:
    """The ffmpeg arguments that write the master to ``out_path``.

    The video is stream-copied through the concat demuxer list ``concat_list`` (the clips in copy
    mode, the rendered pieces otherwise); ``audio`` is the joined PCM (None: no clip has audio, and
    the master gets exact silence), encoded once to AAC after a ``volume`` of ``gain_db``;
    ``srt_path`` adds an embedded ``mov_text`` track.
    """
    opts = plan.options
    video = ffmpeg_builder.input(str(concat_list), f="concat", safe=0)["v:0"]
    sound = _silence(sum(p.samples for p in plan.pieces)) if audio is None else _pcm_input(audio)["a"]
    if gain_db is not None:
        sound = sound.filter("volume", f"{gain_db:.2f}dB")
    out_kwargs: dict[str, object] = {
        "vcodec": "copy",
        "acodec": "aac",
        "audio_bitrate": opts.audio_bitrate,
        "ar": SAMPLE_RATE,
        "ac": 2,
        "movflags": "+faststart",
        "f": "mp4",
    }
    streams = [video, sound]
    if srt_path is not None:
        streams.append(ffmpeg_builder.input(str(srt_path), f="srt")["s:0"])
        out_kwargs["c:s"] = "mov_text"
        out_kwargs["metadata:s:s:0"] = f"language={opts.subtitle_language}"
    return to_args(ffmpeg_builder.output(*streams, str(out_path), **out_kwargs))


def command_timeout(media_s: float, *, encodes_video: bool) -> float:
    """A generous limit for one command handling ``media_s`` seconds of the master."""
    per_second = 8.0 if encodes_video else 1.0
    return 60.0 + per_second * media_s
