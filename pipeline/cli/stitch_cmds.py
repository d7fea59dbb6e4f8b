"""``klingflow stitch``: clips in, one checked master out, without a run (editors re-stitch).

The same stitcher and the same checks as a run's masters: each clip is probed once (the probe is
passed to the stitcher), taken whole (its own video length is its scripted length), and the
master is quality-checked with the stitch's own probe and loudness unless ``--no-qc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from pipeline.errors import EXIT_FAILURE, InputError, InputNotFound, MediaError
from pipeline.media.probe import Probe, probe
from pipeline.media.qc import QCReport, check
from pipeline.media.stitch import StitchResult, stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions
from pipeline.media.subtitles import Cue, parse_srt

#: The loudness targets a master may ask for: EBU R128's gate floor up to full scale.
MIN_LUFS, MAX_LUFS = -70.0, 0.0


def probe_clips(paths: Sequence[Path]) -> list[Probe]:
    """Probe every clip once; a missing file is InputNotFound (66), a file that is not a video
    InputError (65), each naming the clip."""
    probes: list[Probe] = []
    for n, path in enumerate(paths, start=1):
        if not path.is_file():
            raise InputNotFound(f"clip {n}: {path} does not exist")
        try:
            probed = probe(path)
        except MediaError as exc:
            raise InputError(f"clip {n}: {path} is not readable media ({exc})") from exc
        video = probed.video
        if video is None or not video.width or not video.height or probed.video_duration <= 0:
            raise InputError(f"clip {n}: {path} has no video stream to stitch")
        probes.append(probed)
    return probes


def read_cues(path: Path) -> list[Cue]:
    """The cues of an SRT file; InputNotFound when it is missing, InputError when it holds none."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputNotFound(f"--subtitles: {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--subtitles: {path} cannot be read as UTF-8 text ({exc})") from exc
    try:
        cues = parse_srt(text)
    except ValueError as exc:
        raise InputError(f"--subtitles: {path}: {exc}") from exc
    if not cues:
        raise InputError(
            f"--subtitles: {path} holds no SRT cue (expected blocks like '1 / 00:00:01,000 --> ...')"
        )
    return cues


def stitch_clips(
    clips: Sequence[Path],
    out: Path,
    options: StitchOptions,
    *,
    cues: Sequence[Cue] = (),
    qc: bool = True,
) -> tuple[StitchResult, QCReport | None]:
    """Stitch ``clips`` whole into ``out`` and check the master as a run checks its masters."""
    if out.resolve() in {c.resolve() for c in clips}:
        raise InputError(f"--out {out} is one of the clips: choose another file")
    probes = probe_clips(clips)
    inputs = [
        ClipInput(path=str(c), scripted_s=p.video_duration, label=c.stem)
        for c, p in zip(clips, probes, strict=True)
    ]
    result = stitch(inputs, out, options, subtitles=list(cues) or None, probes=probes)
    if not qc:
        return result, None
    report = check(
        out,
        expect_duration=result.expected_duration_s,
        expect_audio=any(p.audio is not None for p in probes),
        duration_tolerance_s=result.plan.tolerance_s,
        probed=result.probe,
        loudness=result.loudness,
    )
    return result, report


def _describe(result: StitchResult) -> str:
    lufs = result.loudness.integrated_lufs
    level = "no audio" if lufs is None else f"{lufs:.1f} LUFS"
    how = "video stream-copied" if result.plan.mode == "copy" else "re-encoded"
    return f"{result.path}: {result.duration_s:.3f} s, {how}, {level}, sha256 {result.sha256[:16]}…"


def register(app: typer.Typer) -> None:
    """Add the stitch command to ``app``."""

    @app.command(name="stitch")
    def stitch_command(
        clips: Annotated[list[Path], typer.Argument(help="The clips, in order (each taken whole).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="The master to write (MP4).")],
        transition: Annotated[
            str, typer.Option("--transition", help="How clips join: cut or crossfade.")
        ] = "cut",
        crossfade_seconds: Annotated[
            float, typer.Option("--crossfade-seconds", min=0.04, max=5.0, help="Length of each crossfade.")
        ] = 0.5,
        loudness: Annotated[
            float,
            typer.Option("--loudness", min=MIN_LUFS, max=MAX_LUFS, help="Integrated loudness target (LUFS)."),
        ] = -16.0,
        subtitles: Annotated[
            Path | None,
            typer.Option("--subtitles", help="An SRT file to embed (and copy beside the master)."),
        ] = None,
        no_qc: Annotated[bool, typer.Option("--no-qc", help="Skip the master's quality checks.")] = False,
    ) -> None:
        """Stitch clips into one master, with the same loudness, lengths and checks as a run.

        Each clip is taken whole; compatible clips joined by cuts are stream-copied. Exit 1 when
        the master was written but its quality checks found errors (it is kept).

        Example: klingflow stitch seg0.mp4 seg1.mp4 seg2.mp4 --out master.mp4 --transition crossfade
        """
        if transition not in ("cut", "crossfade"):
            raise typer.BadParameter(
                f"{transition!r} is not one of 'cut', 'crossfade'", param_hint="--transition"
            )
        join: Literal["cut", "crossfade"] = "crossfade" if transition == "crossfade" else "cut"
        cues = read_cues(subtitles) if subtitles is not None else []
        options = StitchOptions(transition=join, crossfade_s=crossfade_seconds, loudness_lufs=loudness)
        result, report = stitch_clips(clips, out, options, cues=cues, qc=not no_qc)
        console = Console(highlight=False, soft_wrap=True)
        console.print(_describe(result), markup=False)
        if result.srt_path:
            console.print(f"subtitles: {result.srt_path}", markup=False)
        if report is None:
            return
        for finding in report.findings:
            start, end = finding.start_s, finding.end_s
            where = f" at {start:.2f}-{end:.2f} s" if start is not None and end is not None else ""
            console.print(f"{finding.severity}: {finding.kind}{where}: {finding.detail}", markup=False)
        if not report.passed:
            Console(stderr=True, highlight=False).print("error: the master failed its quality checks (kept)")
            raise typer.Exit(EXIT_FAILURE)
        console.print("quality checks passed", markup=False)
