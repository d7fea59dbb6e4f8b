"""Executing a stitch plan: clips in, one verified master (and its SRT sidecar) out.

The commands are built as data (:func:`build_measure_args`, :func:`build_stitch_args`) from a
:class:`~pipeline.media.stitch_plan.StitchPlan` and run through :mod:`pipeline.media.run`; ffmpeg
streams the media, Python never holds a frame. The master is written inside a temporary folder
next to its destination and renamed into place only once it has been probed and checked.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import ffmpeg as ffmpeg_builder
from pydantic import BaseModel, ConfigDict

from pipeline.errors import MediaError
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
from pipeline.media.stitch_plan import ClipInput, ClipPlan, StitchOptions, StitchPlan, plan_stitch
from pipeline.media.subtitles import Cue, to_srt

SAMPLE_RATE = 48_000
#: Keyframe every two seconds in re-encoded masters, so editors and players seek quickly.
KEYFRAME_INTERVAL_S = 2
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


def concat_list_text(plan: StitchPlan) -> str:
    """The concat-demuxer list for copy mode, with each clip's video length as its ``duration``.

    Giving the duration makes the next clip start where this clip's *video* ends, even when its
    audio track runs longer (the container duration would follow the audio).
    """
    lines: list[str] = ["ffconcat version 1.0"]
    for clip in plan.clips:
        quoted = str(Path(clip.path).resolve()).replace("'", "'\\''")
        lines += [f"file '{quoted}'", f"duration {clip.take_s:.6f}"]
    return "\n".join(lines) + "\n"


def _fan_out(bases: Sequence[tuple[Hashable, Any]], split_filter: str) -> list[Any]:
    """One stream per clip, splitting a source that serves several clips.

    ffmpeg-python merges identical nodes: the same file (or two equally long silences) listed twice
    would become one node feeding two chains, which it refuses. Splitting the shared source gives
    each use its own branch, and the file is still opened only once.
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


def _clip_sources(plan: StitchPlan) -> dict[str, Any]:
    paths = {str(Path(c.path).resolve()) for c in plan.clips}
    return {path: ffmpeg_builder.input(path) for path in sorted(paths)}


def _audio_sources(plan: StitchPlan, sources: dict[str, Any]) -> list[Any]:
    bases: list[tuple[Hashable, Any]] = []
    for clip in plan.clips:
        if clip.has_audio:
            path = str(Path(clip.path).resolve())
            bases.append((path, sources[path]["a:0"]))
        else:
            # A clip without audio gets silence bounded to its length (an endless source never ends).
            silence = ffmpeg_builder.input(
                f"anullsrc=r={SAMPLE_RATE}:cl=stereo", f="lavfi", t=f"{clip.take_s:.6f}"
            )
            bases.append((("silence", clip.take_s), silence))
    return _fan_out(bases, "asplit")


def _video_sources(plan: StitchPlan, sources: dict[str, Any]) -> list[Any]:
    paths = [str(Path(c.path).resolve()) for c in plan.clips]
    return _fan_out([(path, sources[path]["v:0"]) for path in paths], "split")


def _audio_piece(clip: ClipPlan, stream: Any) -> Any:
    """One clip's audio as exactly ``take_s`` of 48 kHz stereo (bounded silence without audio)."""
    if clip.has_audio:
        # async + first_pts: fill any gap at the start or inside with silence, keeping sync.
        stream = stream.filter("aresample", SAMPLE_RATE, **{"async": 1, "first_pts": 0})
    return (
        stream.filter("aformat", sample_fmts="fltp", sample_rates=SAMPLE_RATE, channel_layouts="stereo")
        .filter("atrim", end=f"{clip.take_s:.6f}")
        .filter("apad", whole_dur=f"{clip.take_s:.6f}")
        .filter("asetpts", "PTS-STARTPTS")
    )


def _video_piece(plan: StitchPlan, clip: ClipPlan, stream: Any) -> Any:
    """One clip's video on the plan's canvas, constant rate, exactly ``take_s`` long."""
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
    # Hold the last frame a little past the end (and over any shortfall) so the trim below always
    # has a frame to end on, whatever the rate conversion rounded to.
    hold = clip.pad_s + 2 * plan.frame_s
    return (
        stream.filter("tpad", stop_mode="clone", stop_duration=f"{hold:.6f}")
        .filter("trim", end=f"{clip.take_s:.6f}")
        .filter("setpts", "PTS-STARTPTS")
    )


def _join_audio(plan: StitchPlan, pieces: Sequence[Any]) -> Any:
    if len(pieces) == 1:
        return pieces[0]
    if plan.transition == "crossfade":
        joined = pieces[0]
        for piece in pieces[1:]:
            joined = ffmpeg_builder.filter([joined, piece], "acrossfade", d=f"{plan.crossfade_s:.6f}")
        return joined
    return ffmpeg_builder.concat(*pieces, v=0, a=1)


def _join_video(plan: StitchPlan, pieces: Sequence[Any]) -> Any:
    if len(pieces) == 1:
        return pieces[0]
    if plan.transition == "crossfade":
        joined = pieces[0]
        for piece, offset in zip(pieces[1:], plan.xfade_offsets, strict=True):
            joined = ffmpeg_builder.filter(
                [joined, piece],
                "xfade",
                transition="fade",
                duration=f"{plan.crossfade_s:.6f}",
                offset=f"{offset:.6f}",
            )
        return joined
    return ffmpeg_builder.concat(*pieces, v=1, a=0)


def _master_audio(plan: StitchPlan, sources: dict[str, Any], measured: LoudnormMeasurement | None) -> Any:
    pieces = _audio_sources(plan, sources)
    audio = _join_audio(plan, [_audio_piece(c, src) for c, src in zip(plan.clips, pieces, strict=True)])
    opts = plan.options
    if opts.loudness_lufs is not None and measured is not None:
        audio = audio.filter(
            "loudnorm",
            **loudnorm_options(opts.loudness_lufs, opts.true_peak_db, opts.loudness_range_lu, measured),
        )
    return audio


def build_measure_args(plan: StitchPlan) -> list[str]:
    """Pass 1 of loudness normalisation: the master's audio graph into ``loudnorm`` (JSON), no file.

    Measuring the filter graph rather than an encoded master means the audio is encoded once.
    """
    opts = plan.options
    if opts.loudness_lufs is None:
        raise ValueError("the plan has no loudness target to measure for")
    audio = _master_audio(plan, _clip_sources(plan), None).filter(
        "loudnorm", **loudnorm_options(opts.loudness_lufs, opts.true_peak_db, opts.loudness_range_lu)
    )
    return to_args(ffmpeg_builder.output(audio, "-", f="null"), overwrite=False)


def build_stitch_args(
    plan: StitchPlan,
    out_path: str | Path,
    *,
    concat_list: str | Path | None = None,
    srt_path: str | Path | None = None,
    measured: LoudnormMeasurement | None = None,
) -> list[str]:
    """The ffmpeg arguments that write the master to ``out_path``.

    Copy mode reads the video through the concat demuxer list ``concat_list`` (see
    :func:`concat_list_text`); ``srt_path`` adds an embedded ``mov_text`` track; ``measured``
    (pass 1's result) turns on loudness normalisation when the plan has a target.
    """
    opts = plan.options
    sources = _clip_sources(plan)
    audio = _master_audio(plan, sources, measured)
    out_kwargs: dict[str, object] = {
        "acodec": "aac",
        "audio_bitrate": opts.audio_bitrate,
        "ar": SAMPLE_RATE,
        "ac": 2,
        "movflags": "+faststart",
        "f": "mp4",
    }
    if plan.mode == "copy":
        if concat_list is None:
            raise ValueError("copy mode needs the concat list file")
        video = ffmpeg_builder.input(str(concat_list), f="concat", safe=0)["v:0"]
        out_kwargs["vcodec"] = "copy"
    else:
        pieces = _video_sources(plan, sources)
        video = _join_video(
            plan, [_video_piece(plan, c, src) for c, src in zip(plan.clips, pieces, strict=True)]
        )
        out_kwargs.update(
            vcodec="libx264",
            preset=opts.x264_preset,
            crf=opts.x264_crf,
            pix_fmt="yuv420p",
            g=max(1, round(KEYFRAME_INTERVAL_S * plan.frame_rate)),
        )
    streams = [video, audio]
    if srt_path is not None:
        streams.append(ffmpeg_builder.input(str(srt_path), f="srt")["s:0"])
        out_kwargs["c:s"] = "mov_text"
    return to_args(ffmpeg_builder.output(*streams, str(out_path), **out_kwargs))


def stitch_timeout(plan: StitchPlan) -> float:
    """A generous limit for one stitch command, scaled by the master's length and the mode."""
    per_second = 1.0 if plan.mode == "copy" else 8.0
    return 120.0 + per_second * plan.expected_duration_s


# --- running ---------------------------------------------------------------------------------


def sha256_file(path: str | Path) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


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


def execute_stitch(
    plan: StitchPlan,
    output: str | Path,
    *,
    subtitles: Sequence[Cue] | None = None,
    timeout: float | None = None,
) -> StitchResult:
    """Run ``plan``: measure loudness (pass 1), write and verify the master, rename it into place.

    With cues, an SRT sidecar is written beside the master (same name, ``.srt``) and embedded as a
    ``mov_text`` track. Raises MediaError when ffmpeg fails or the result does not verify; nothing
    is left at ``output`` in that case.
    """
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    limit = timeout if timeout is not None else stitch_timeout(plan)
    cues = _clamped_cues(subtitles or [], plan.expected_duration_s)
    # The work folder sits beside the destination so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.") as tmp:
        work = Path(tmp)
        concat_list: Path | None = None
        if plan.mode == "copy":
            concat_list = work / "clips.ffconcat"
            concat_list.write_text(concat_list_text(plan), encoding="utf-8")
        srt: Path | None = None
        if cues:
            srt = work / "subtitles.srt"
            srt.write_text(to_srt(cues), encoding="utf-8")
        measured: LoudnormMeasurement | None = None
        if plan.options.loudness_lufs is not None:
            pass1 = ffmpeg(build_measure_args(plan), timeout=limit, what=f"loudness pass 1 of {out.name}")
            measured = parse_loudnorm_json(pass1)
        apply = measured if measured is not None and not measured.is_silent else None
        master = work / "master.mp4"
        ffmpeg(
            build_stitch_args(plan, master, concat_list=concat_list, srt_path=srt, measured=apply),
            timeout=limit,
            what=f"stitch of {out.name}",
        )
        checked = verify_master(plan, master, expect_subtitles=bool(cues))
        loudness = measure_loudness(master, timeout=limit)
        digest, size = sha256_file(master)
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
