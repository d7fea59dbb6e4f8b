"""Executing a stitch plan: clips in, one verified master (and its SRT sidecar) out.

The commands are built as data from a :class:`~pipeline.media.stitch_plan.StitchPlan` by
:mod:`pipeline.media.stitch_commands` and run through :mod:`pipeline.media.run`; ffmpeg streams
the media, Python never holds a frame.

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
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pipeline.errors import MediaError
from pipeline.hashing import sha256_file
from pipeline.media.loudness import (
    Loudness,
    LoudnormMeasurement,
    measure_loudness,
    parse_loudnorm_json,
)
from pipeline.media.probe import Probe, is_faststart, probe
from pipeline.media.run import ffmpeg
from pipeline.media.stitch_commands import (
    PCM_CHANNELS,
    PCM_FORMAT,
    PCM_SAMPLE_BYTES,
    build_measure_args,
    build_piece_args,
    build_stitch_args,
    command_timeout,
    concat_list_text,
    piece_list_text,
    piece_paths,
)
from pipeline.media.stitch_plan import (
    SAMPLE_RATE,
    ClipInput,
    StitchOptions,
    StitchPlan,
    incompatibilities,
    plan_stitch,
)
from pipeline.media.subtitles import Cue, to_srt

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
