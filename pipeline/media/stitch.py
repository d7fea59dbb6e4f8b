"""Executing a stitch plan: clips in, one verified master (and its SRT sidecar) out.

The commands are built as data from a :class:`~pipeline.media.stitch_plan.StitchPlan` by
:mod:`pipeline.media.stitch_commands` and run through :mod:`pipeline.media.run`; ffmpeg streams
the media, Python never holds a frame.

Memory does not grow with the master's length: no command opens more than two clips. Execution
runs in three steps, in a temporary folder next to the destination:

1. **Pieces**. Re-encoding: one command per piece (:func:`build_piece_args`), a clip's body or
   one crossfade between the tail of a clip and the head of the next, each piece's video with
   the same encoder settings. Copy mode: only the audio, up to ``MAX_CLIPS_PER_COMMAND`` clips per
   command (:func:`build_audio_args`). Either way the audio is raw 48 kHz stereo PCM, exactly as
   many samples as each piece lasts, so audio joins cannot drift.
2. **Join**: the PCM is concatenated byte for byte (:func:`join_pcm`); the video is joined by the
   concat demuxer (:func:`concat_list_text` over the clips in copy mode, :func:`piece_list_text`
   over the rendered pieces otherwise) and stream-copied.
3. **Level**: ebur128 measures the joined audio, the clips' own sound (in the same command that
   decoded it when one command holds the whole master, else :func:`build_measure_args`);
   :func:`~pipeline.media.loudness.plan_level` turns that into one linear gain.
4. **Limit**, only when the gain would push the true peak over the ceiling: the PCM is raised and
   limited (:func:`build_limit_args`), measured as it is written, and the gain corrected until the
   limited audio lands on the target (:func:`limit_audio`).
5. **Master**: one command muxes the copied video, the audio with its gain encoded once to AAC and
   the subtitles (:func:`build_stitch_args`). The master's loudness is its audio's as it went into
   the encoder: the source's moved by the gain, or the limited audio's as measured.

Nothing is measured when no clip has audio. The master is probed (once: the probe travels with the
result, for its QC) and checked before it is renamed into place.
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
    LIMITED_ATTEMPTS,
    NO_LOUDNESS,
    LevelPlan,
    Loudness,
    next_limited_gain,
    parse_ebur128_summary,
    plan_level,
)
from pipeline.media.probe import Probe, is_faststart, probe
from pipeline.media.run import ffmpeg
from pipeline.media.stitch_commands import (
    PCM_CHANNELS,
    PCM_FORMAT,
    PCM_SAMPLE_BYTES,
    audio_batches,
    batch_path,
    build_audio_args,
    build_limit_args,
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
    #: The master's loudness: its source's shifted by a linear gain, or measured when limited.
    loudness: Loudness
    #: What ebur128 measured on the clips' joined audio (None: no clip has audio).
    source_loudness: Loudness | None
    level: LevelPlan | None
    plan: StitchPlan
    #: The master's ffprobe, taken to verify it: its QC reuses it.
    probe: Probe


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

    Returns the concat list for the master's video and the joined PCM audio. (Copy mode renders
    its audio faster with :func:`render_copy_audio`.)
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


def _pcm_samples(path: Path) -> int:
    return path.stat().st_size // (PCM_CHANNELS * PCM_SAMPLE_BYTES)


def render_copy_audio(
    plan: StitchPlan, work: Path, *, measure: bool, timeout: float | None = None
) -> tuple[Path, Loudness | None]:
    """Copy mode's audio: every clip's decoded once into one joined PCM file in ``work``.

    With ``measure`` and a master short enough for one command, ebur128 reads the samples as they
    are decoded and the measurement comes back too (else None: measure the PCM afterwards).
    """
    batches = audio_batches(plan)
    fused = measure and len(batches) == 1
    parts: list[Path] = []
    stderr = ""
    for k, batch in enumerate(batches):
        out = batch_path(work, k)
        samples = sum(p.samples for p in batch)
        names = ", ".join(Path(plan.clips[p.spans[0].clip].path).name for p in batch)
        what = f"audio of clips {batch[0].index + 1}-{batch[-1].index + 1} of {len(plan.pieces)} ({names})"
        stderr = ffmpeg(
            build_audio_args(plan, batch, out, measure=fused),
            timeout=timeout
            if timeout is not None
            else command_timeout(samples / SAMPLE_RATE, encodes_video=False),
            what=what,
        )
        # Exactly its samples, or the joins would drift: check before anything is joined.
        if _pcm_samples(out) != samples:
            raise MediaError(f"{what} wrote {_pcm_samples(out)} audio samples, expected {samples}")
        parts.append(out)
    audio = work / f"audio.{PCM_FORMAT}"
    join_pcm(parts, audio, remove=True)
    return audio, parse_ebur128_summary(stderr) if fused else None


def _render(
    plan: StitchPlan, work: Path, *, timeout: float | None
) -> tuple[Path, Path | None, Loudness | None]:
    """The master's inputs in ``work``: video concat list, joined PCM (None: no clip has audio) and,
    when it came free with the decode, the PCM's loudness."""
    if plan.mode == "reencode":
        concat_list, audio = render_pieces(plan, work, timeout=timeout)
        return concat_list, audio, None
    concat_list = work / "video.ffconcat"
    concat_list.write_text(concat_list_text(plan), encoding="utf-8")
    if not any(c.has_audio for c in plan.clips):
        return concat_list, None, None
    audio, source = render_copy_audio(plan, work, measure=True, timeout=timeout)
    return concat_list, audio, source


def limit_audio(level: LevelPlan, audio: Path, work: Path, *, timeout: float) -> tuple[Path, Loudness]:
    """Raise and limit ``audio`` into a new PCM file; returns it and its measured loudness.

    The gain is corrected by what the limiter took away, up to ``LIMITED_ATTEMPTS`` passes (each a
    pass over PCM: no decode, no encode), keeping the pass closest to the target.
    """
    gain: float | None = level.gain_db
    best: tuple[float, Path, Loudness] | None = None
    for attempt in range(LIMITED_ATTEMPTS):
        if gain is None:
            break
        out = work / f"limited-{attempt}.{PCM_FORMAT}"
        stderr = ffmpeg(
            build_limit_args(audio, out, gain_db=gain, true_peak_db=level.true_peak_db),
            timeout=timeout,
            what=f"limiter pass {attempt + 1} ({gain:+.2f} dB)",
        )
        got = parse_ebur128_summary(stderr)
        if _pcm_samples(out) != _pcm_samples(audio):
            raise MediaError(f"the limiter wrote {_pcm_samples(out)} samples, expected {_pcm_samples(audio)}")
        miss = abs((got.integrated_lufs or level.target_lufs) - level.target_lufs)
        if best is None or miss < best[0]:
            if best is not None:
                best[1].unlink()
            best = (miss, out, got)
        else:
            out.unlink()
        gain = next_limited_gain(level, gain, got)
    assert best is not None  # the first pass always runs
    return best[1], best[2]


def execute_stitch(
    plan: StitchPlan,
    output: str | Path,
    *,
    subtitles: Sequence[Cue] | None = None,
    timeout: float | None = None,
) -> StitchResult:
    """Run ``plan``: render the audio (and pieces), measure, write and verify the master, rename it.

    With cues, an SRT sidecar is written beside the master (same name, ``.srt``) and embedded as a
    ``mov_text`` track. ``timeout`` limits each ffmpeg command (default: scaled to its work).
    Raises MediaError when ffmpeg fails or the result does not verify; nothing is left at
    ``output`` in that case.
    """
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    whole = timeout if timeout is not None else command_timeout(plan.expected_duration_s, encodes_video=False)
    cues = _clamped_cues(subtitles or [], plan.expected_duration_s)
    has_audio = any(c.has_audio for c in plan.clips)
    opts = plan.options
    # The work folder sits beside the destination so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.") as tmp:
        work = Path(tmp)
        concat_list, audio, source = _render(plan, work, timeout=timeout)
        if not has_audio:
            audio, source = None, None  # silence throughout: nothing to measure or level
        elif source is None and audio is not None:
            measured = ffmpeg(build_measure_args(audio), timeout=whole, what=f"loudness of {out.name}")
            source = parse_ebur128_summary(measured)
        level: LevelPlan | None = None
        if source is not None and opts.loudness_lufs is not None:
            level = plan_level(source, opts.loudness_lufs, opts.true_peak_db, opts.loudness_range_lu)
        srt: Path | None = None
        if cues:
            srt = work / "subtitles.srt"
            srt.write_text(to_srt(cues), encoding="utf-8")
        gain = level.gain_db if level is not None else None
        loudness = level.expected if level is not None and level.expected else (source or NO_LOUDNESS)
        if level is not None and level.limit and audio is not None:
            audio, loudness = limit_audio(level, audio, work, timeout=whole)
            gain = None  # the limited audio is at its level already
        master = work / "master.mp4"
        ffmpeg(
            build_stitch_args(plan, master, concat_list=concat_list, audio=audio, srt_path=srt, gain_db=gain),
            timeout=whole,
            what=f"stitch of {out.name}",
        )
        checked = verify_master(plan, master, expect_subtitles=bool(cues))
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
        source_loudness=source,
        level=level,
        plan=plan,
        probe=checked.model_copy(update={"path": str(out)}),
    )


def stitch(
    clips: Sequence[ClipInput],
    output: str | Path,
    options: StitchOptions | None = None,
    *,
    subtitles: Sequence[Cue] | None = None,
    timeout: float | None = None,
    probes: Sequence[Probe] | None = None,
) -> StitchResult:
    """Probe ``clips`` (unless their ``probes`` are given, e.g. from their download), plan the
    stitch and execute it: the one call the render flow makes.

    Example::

        result = stitch(
            [ClipInput(path="seg0.mp4", scripted_s=5), ClipInput(path="seg1.mp4", scripted_s=3)],
            "renders/atlantic-a.mp4",
            StitchOptions(transition="crossfade", crossfade_s=0.5, loudness_lufs=-16),
            subtitles=cues_for_shots(shots),
        )
        result.duration_s, result.sha256, result.srt_path
    """
    probed = list(probes) if probes is not None else [probe(c.path) for c in clips]
    return execute_stitch(plan_stitch(clips, probed, options), output, subtitles=subtitles, timeout=timeout)
