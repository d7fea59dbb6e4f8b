"""Executing a stitch plan: clips in, one verified master (and its SRT sidecar) out.

The commands are built as data from a :class:`~pipeline.media.stitch_plan.StitchPlan` and run
through :mod:`pipeline.media.run`; ffmpeg streams the media, Python never holds a frame.

Memory does not grow with the master's length: no command opens more than two clips. Execution
runs in three steps, in a temporary folder next to the destination:

1. **Pieces** (:func:`build_piece_args`), one command each: a clip's body, or one crossfade
   between the tail of a clip and the head of the next. Re-encoding renders each piece's video
   with the same encoder settings; both modes write each piece's audio as raw 48 kHz stereo PCM,
   exactly as many samples as the piece lasts, so audio joins cannot drift.
2. **Join**: the PCM pieces are concatenated byte for byte (:func:`join_pcm`); the video is
   joined by the concat demuxer (:func:`concat_list_text` over the clips in copy mode,
   :func:`piece_list_text` over the rendered pieces otherwise) and stream-copied.
3. **Master**: loudness pass 1 reads the joined PCM only (:func:`build_measure_args`); one
   command muxes the copied video, the normalised audio encoded once to AAC and the subtitles
   (:func:`build_stitch_args`).

The master is probed and checked before it is renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import ffmpeg as ffmpeg_builder
from pydantic import BaseModel, ConfigDict

from pipeline.errors import MediaError
from pipeline.hashing import sha256_file
from pipeline.media.command import to_args
from pipeline.media.loudness import (
    Loudness,
    LoudnormMeasurement,
    loudnorm_options,
    measure_loudness,
    parse_loudnorm_json,
)
from pipeline.media.probe import Probe, is_faststart, probe
from pipeline.media.run import ffmpeg
from pipeline.media.stitch_plan import (
    SAMPLE_RATE,
    ClipInput,
    ClipPlan,
    Piece,
    Span,
    StitchOptions,
    StitchPlan,
    incompatibilities,
    plan_stitch,
)
from pipeline.media.subtitles import Cue, to_srt

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
_HASH_CHUNK = 1 << 20


class StitchResult(BaseModel):
    """A delivered master: where it is, what it is, and what was measured on it."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str
    size_bytes: int
    duration_s: float
    video_s: float
    audio_s: float
    expected_duration_s: float
    srt_path: str | None
    loudness: Loudness
    loudnorm_input: LoudnormMeasurement | None
    plan: StitchPlan


# --- building commands (pure) -----------------------------------------------------------------


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


def build_measure_args(plan: StitchPlan, audio: str | Path) -> list[str]:
    """Pass 1 of loudness normalisation: the joined PCM ``audio`` into ``loudnorm`` (JSON), no file.

    Reads the master's audio before it is encoded, and nothing else: no video is demuxed.
    """
    opts = plan.options
    if opts.loudness_lufs is None:
        raise ValueError("the plan has no loudness target to measure for")
    stream = _pcm_input(audio)["a"].filter(
        "loudnorm", **loudnorm_options(opts.loudness_lufs, opts.true_peak_db, opts.loudness_range_lu)
    )
    return to_args(ffmpeg_builder.output(stream, "-", f="null"), overwrite=False)


def build_stitch_args(
    plan: StitchPlan,
    out_path: str | Path,
    *,
    concat_list: str | Path,
    audio: str | Path,
    srt_path: str | Path | None = None,
    measured: LoudnormMeasurement | None = None,
) -> list[str]:
    """The ffmpeg arguments that write the master to ``out_path``.

    The video is stream-copied through the concat demuxer list ``concat_list`` (the clips in copy
    mode, the rendered pieces otherwise); ``audio`` is the joined PCM, encoded once to AAC;
    ``srt_path`` adds an embedded ``mov_text`` track; ``measured`` (pass 1's result) turns on
    loudness normalisation when the plan has a target.
    """
    opts = plan.options
    video = ffmpeg_builder.input(str(concat_list), f="concat", safe=0)["v:0"]
    sound = _pcm_input(audio)["a"]
    if opts.loudness_lufs is not None and measured is not None:
        sound = sound.filter(
            "loudnorm",
            **loudnorm_options(opts.loudness_lufs, opts.true_peak_db, opts.loudness_range_lu, measured),
        )
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
    return to_args(ffmpeg_builder.output(*streams, str(out_path), **out_kwargs))


def command_timeout(media_s: float, *, encodes_video: bool) -> float:
    """A generous limit for one command handling ``media_s`` seconds of the master."""
    per_second = 8.0 if encodes_video else 1.0
    return 60.0 + per_second * media_s


# --- running ---------------------------------------------------------------------------------


def verify_master(plan: StitchPlan, path: str | Path, *, expect_subtitles: bool) -> Probe:
    """Probe a freshly written master and raise MediaError unless it is what the plan promised."""
    p = probe(path)
    problems: list[str] = []
    if p.video is None:
        problems.append("no video stream")
    if p.audio is None:
        problems.append("no audio stream")
    video_s, audio_s = p.video_duration, p.audio_duration or 0.0
    if abs(video_s - plan.expected_duration_s) > plan.tolerance_s:
        problems.append(
            f"video is {video_s:.3f} s, expected {plan.expected_duration_s:.3f} s ± {plan.tolerance_s:.3f} s"
        )
    if p.audio is not None and abs(audio_s - video_s) > plan.frame_s + 1e-3:
        problems.append(f"audio ({audio_s:.3f} s) and video ({video_s:.3f} s) lengths differ by over a frame")
    if expect_subtitles and not p.subtitles:
        problems.append("no subtitle track")
    if not is_faststart(path):
        problems.append("moov box is not before mdat (faststart failed)")
    if problems:
        raise MediaError(f"stitched master {path} failed verification: " + "; ".join(problems))
    return p


def _clamped_cues(cues: Sequence[Cue], end_s: float) -> list[Cue]:
    # A cue past the end of the master would lengthen the container; drop or shorten it.
    return [
        Cue(start_s=c.start_s, end_s=min(c.end_s, end_s), text=c.text)
        for c in cues
        if c.start_s < end_s - 1e-3
    ]


def join_pcm(parts: Sequence[str | Path], out: str | Path, *, remove: bool = False) -> int:
    """Concatenate raw PCM files into ``out``, streaming in 1 MiB chunks; returns bytes written.

    Raw PCM has no header and no priming, so the join is exact to the sample. With ``remove``,
    each part is deleted once copied, so the work folder holds the audio only about once.
    """
    written = 0
    with Path(out).open("wb") as sink:
        for part in parts:
            with Path(part).open("rb") as source:
                shutil.copyfileobj(source, sink, _HASH_CHUNK)
                written += source.tell()
            if remove:
                Path(part).unlink()
    return written


def _check_pieces(plan: StitchPlan, work: Path) -> None:
    """Refuse to stream-copy rendered pieces whose video parameters differ (a broken master)."""
    probes = [probe(piece_paths(work, piece)[0]) for piece in plan.pieces]
    problems = incompatibilities(probes)
    if problems:
        raise MediaError("rendered pieces cannot be joined by stream copy: " + "; ".join(problems[:5]))


def render_pieces(plan: StitchPlan, work: Path, *, timeout: float | None = None) -> tuple[Path, Path]:
    """Render every piece into ``work``, one command at a time; join their audio.

    Returns the concat list for the master's video and the joined PCM audio.
    """
    encodes = plan.mode == "reencode"
    for piece in plan.pieces:
        seconds = piece.samples / SAMPLE_RATE
        sources = " into ".join(Path(plan.clips[span.clip].path).name for span in piece.spans)
        what = f"piece {piece.index + 1} of {len(plan.pieces)} ({piece.kind} of {sources})"
        ffmpeg(
            build_piece_args(plan, piece, work),
            timeout=timeout if timeout is not None else command_timeout(seconds, encodes_video=encodes),
            what=what,
        )
        # Exactly its samples, or the joins would drift: check before anything is joined.
        written = piece_paths(work, piece)[1].stat().st_size // (PCM_CHANNELS * PCM_SAMPLE_BYTES)
        if written != piece.samples:
            raise MediaError(f"{what} wrote {written} audio samples, expected {piece.samples}")
    concat_list = work / "video.ffconcat"
    if encodes:
        _check_pieces(plan, work)
        concat_list.write_text(piece_list_text(plan, work), encoding="utf-8")
    else:
        concat_list.write_text(concat_list_text(plan), encoding="utf-8")
    audio = work / f"audio.{PCM_FORMAT}"
    join_pcm([piece_paths(work, p)[1] for p in plan.pieces], audio, remove=True)
    return concat_list, audio


def execute_stitch(
    plan: StitchPlan,
    output: str | Path,
    *,
    subtitles: Sequence[Cue] | None = None,
    timeout: float | None = None,
) -> StitchResult:
    """Run ``plan``: render the pieces, measure loudness, write and verify the master, rename it.

    With cues, an SRT sidecar is written beside the master (same name, ``.srt``) and embedded as a
    ``mov_text`` track. ``timeout`` limits each ffmpeg command (default: scaled to its work).
    Raises MediaError when ffmpeg fails or the result does not verify; nothing is left at
    ``output`` in that case.
    """
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    whole = timeout if timeout is not None else command_timeout(plan.expected_duration_s, encodes_video=False)
    cues = _clamped_cues(subtitles or [], plan.expected_duration_s)
    # The work folder sits beside the destination so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.") as tmp:
        work = Path(tmp)
        concat_list, audio = render_pieces(plan, work, timeout=timeout)
        srt: Path | None = None
        if cues:
            srt = work / "subtitles.srt"
            srt.write_text(to_srt(cues), encoding="utf-8")
        measured: LoudnormMeasurement | None = None
        if plan.options.loudness_lufs is not None:
            pass1 = ffmpeg(
                build_measure_args(plan, audio), timeout=whole, what=f"loudness pass 1 of {out.name}"
            )
            measured = parse_loudnorm_json(pass1)
        apply = measured if measured is not None and not measured.is_silent else None
        master = work / "master.mp4"
        ffmpeg(
            build_stitch_args(
                plan, master, concat_list=concat_list, audio=audio, srt_path=srt, measured=apply
            ),
            timeout=whole,
            what=f"stitch of {out.name}",
        )
        checked = verify_master(plan, master, expect_subtitles=bool(cues))
        loudness = measure_loudness(master, timeout=whole)
        digest, size = sha256_file(master), master.stat().st_size
        srt_out: Path | None = None
        if srt is not None:
            srt_out = out.with_suffix(".srt")
            os.replace(srt, srt_out)
        os.replace(master, out)
    return StitchResult(
        path=str(out),
        sha256=digest,
        size_bytes=size,
        duration_s=checked.duration,
        video_s=checked.video_duration,
        audio_s=checked.audio_duration or 0.0,
        expected_duration_s=plan.expected_duration_s,
        srt_path=str(srt_out) if srt_out else None,
        loudness=loudness,
        loudnorm_input=measured,
        plan=plan,
    )


def stitch(
    clips: Sequence[ClipInput],
    output: str | Path,
    options: StitchOptions | None = None,
    *,
    subtitles: Sequence[Cue] | None = None,
    timeout: float | None = None,
) -> StitchResult:
    """Probe ``clips``, plan the stitch and execute it: the one call the render flow makes.

    Example::

        result = stitch(
            [ClipInput(path="seg0.mp4", scripted_s=5), ClipInput(path="seg1.mp4", scripted_s=3)],
            "renders/atlantic-a.mp4",
            StitchOptions(transition="crossfade", crossfade_s=0.5, loudness_lufs=-16),
            subtitles=cues_for_shots(shots),
        )
        result.duration_s, result.sha256, result.srt_path
    """
    probes = [probe(c.path) for c in clips]
    return execute_stitch(plan_stitch(clips, probes, options), output, subtitles=subtitles, timeout=timeout)
