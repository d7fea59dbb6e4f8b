"""Quality checks on a clip or master: one typed report, used by ``select: auto`` and manifests.

Two decodes, as cheap as they can be: one full decode through ``blackdetect``, ``freezedetect`` and
``silencedetect`` (whose error lines also reveal a damaged stream), and one audio-only pass through
``ebur128`` for integrated loudness and true peak.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import ffmpeg as ffmpeg_builder
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import MediaError
from pipeline.media.command import to_args
from pipeline.media.loudness import Loudness, measure_loudness
from pipeline.media.probe import Probe, probe
from pipeline.media.run import ffmpeg

FindingKind = Literal[
    "missing_audio", "silence", "black", "frozen", "duration", "av_length", "decode_error", "true_peak"
]
Severity = Literal["error", "warning"]

#: Detector lines ffmpeg tags ``[error]`` that come from our own filters are not decode errors.
_OWN_FILTERS = ("blackdetect", "freezedetect", "silencedetect")
_MAX_ERROR_LINES = 5


class QCThresholds(BaseModel):
    """What counts as a defect. Defaults suit generated footage at 24–30 fps."""

    model_config = ConfigDict(frozen=True)

    black_min_s: float = Field(default=0.5, gt=0)
    #: Share of a frame's pixels that must be near black (blackdetect ``pic_th``).
    black_picture_ratio: float = Field(default=0.98, gt=0, le=1)
    #: Luminance below which a pixel counts as black (blackdetect ``pix_th``, 0..1).
    black_pixel_threshold: float = Field(default=0.10, ge=0, le=1)
    freeze_min_s: float = Field(default=1.0, gt=0)
    freeze_noise_db: float = -60.0
    silence_min_s: float = Field(default=2.0, gt=0)
    silence_noise_db: float = -50.0
    #: Above this true peak a warning is raised (streaming platforms ask for ≤ -1 dBTP).
    max_true_peak_dbtp: float = -1.0


class Finding(BaseModel):
    """One defect: what, where (seconds), and details; ``error`` findings fail the check."""

    model_config = ConfigDict(frozen=True)

    kind: FindingKind
    severity: Severity = "error"
    start_s: float | None = None
    end_s: float | None = None
    detail: str = ""


class QCReport(BaseModel):
    """The result of :func:`check`: pass/fail, the findings, and what was measured."""

    model_config = ConfigDict(frozen=True)

    path: str
    passed: bool
    findings: tuple[Finding, ...]
    duration_s: float
    video_s: float | None
    audio_s: float | None
    has_audio: bool
    frame_rate: float | None
    integrated_lufs: float | None
    true_peak_dbtp: float | None
    loudness_range_lu: float | None
    expect_duration_s: float | None
    expect_audio: bool | None
    thresholds: QCThresholds

    def of_kind(self, kind: FindingKind) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]


# --- the decode pass (command built as data, output parsed by pure functions) ----------------


def detect_args(p: Probe, thresholds: QCThresholds) -> list[str]:
    """One decode of every frame and sample through the detectors, written nowhere."""
    source = ffmpeg_builder.input(p.path)
    streams: list[Any] = []
    if p.video is not None:
        streams.append(
            source["v:0"]
            .filter(
                "blackdetect",
                d=thresholds.black_min_s,
                pic_th=thresholds.black_picture_ratio,
                pix_th=thresholds.black_pixel_threshold,
            )
            .filter("freezedetect", n=f"{thresholds.freeze_noise_db}dB", d=thresholds.freeze_min_s)
        )
    if p.audio is not None:
        streams.append(
            source["a:0"].filter(
                "silencedetect", n=f"{thresholds.silence_noise_db}dB", d=thresholds.silence_min_s
            )
        )
    # Tagging each line with its level is how decoder errors are told apart from detector output.
    out = ffmpeg_builder.output(*streams, "-", f="null")
    return to_args(out, overwrite=False, global_args=["-loglevel", "level+info"])


_BLACK = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)")
_EVENT = re.compile(r"\b(freeze_start|freeze_end|silence_start|silence_end):\s*(-?[\d.]+)")


def _intervals(events: list[tuple[str, float]], prefix: str, end_of_file: float) -> list[tuple[float, float]]:
    """Pair ``*_start``/``*_end`` events; an interval running to the end prints only its start."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for name, value in events:
        if name == f"{prefix}_start":
            start = value
        elif name == f"{prefix}_end" and start is not None:
            spans.append((start, value))
            start = None
    if start is not None:
        spans.append((start, end_of_file))
    return spans


class Detections(BaseModel):
    """What the detectors and decoders printed: intervals in seconds, and decode error lines."""

    model_config = ConfigDict(frozen=True)

    black: tuple[tuple[float, float], ...] = ()
    frozen: tuple[tuple[float, float], ...] = ()
    silence: tuple[tuple[float, float], ...] = ()
    errors: tuple[str, ...] = ()


def parse_detections(stderr: str, end_of_file: float) -> Detections:
    """Read blackdetect / freezedetect / silencedetect intervals and error lines from stderr."""
    events: list[tuple[str, float]] = []
    black: list[tuple[float, float]] = []
    errors: list[str] = []
    for line in stderr.splitlines():
        if m := _BLACK.search(line):
            black.append((float(m.group(1)), float(m.group(2))))
        elif m := _EVENT.search(line):
            events.append((m.group(1), max(0.0, float(m.group(2)))))
        elif ("[error]" in line or "[fatal]" in line) and not any(f in line for f in _OWN_FILTERS):
            errors.append(line.strip())
    return Detections(
        black=tuple(black),
        frozen=tuple(_intervals(events, "freeze", end_of_file)),
        silence=tuple(_intervals(events, "silence", end_of_file)),
        errors=tuple(errors),
    )


# --- turning measurements into findings (pure) ------------------------------------------------


def _inside(span: tuple[float, float], spans: tuple[tuple[float, float], ...], slack: float) -> bool:
    return any(s - slack <= span[0] and span[1] <= e + slack for s, e in spans)


def findings_for(
    p: Probe,
    detections: Detections,
    loudness: Loudness | None,
    *,
    expect_duration: float | None,
    expect_audio: bool | None,
    thresholds: QCThresholds,
    duration_tolerance_s: float,
) -> list[Finding]:
    """Judge what was measured; the rules ``select: auto`` relies on live here."""
    found: list[Finding] = []
    video_s = p.video_duration if p.video is not None else None
    audio_s = p.audio_duration
    rate = p.video.frame_rate if p.video is not None else None
    frame_s = float(1 / rate) if rate else 0.04
    length = video_s if video_s is not None else p.duration

    if expect_duration is not None and abs(length - expect_duration) > duration_tolerance_s:
        found.append(
            Finding(
                kind="duration",
                detail=f"{length:.3f} s where {expect_duration:.3f} s "
                f"(± {duration_tolerance_s:.3f} s) was expected",
            )
        )
    if expect_audio and p.audio is None:
        found.append(
            Finding(kind="missing_audio", detail="audio was asked for but the file has no audio track")
        )
    if video_s is not None and audio_s is not None and abs(video_s - audio_s) > frame_s + 1e-3:
        found.append(
            Finding(
                kind="av_length", detail=f"audio {audio_s:.3f} s, video {video_s:.3f} s: over a frame apart"
            )
        )
    for start, end in detections.black:
        found.append(Finding(kind="black", start_s=start, end_s=end, detail=f"{end - start:.2f} s of black"))
    for start, end in detections.frozen:
        # A black stretch is also a frozen one; report it once, as black.
        if not _inside((start, end), detections.black, slack=2 * frame_s):
            found.append(
                Finding(kind="frozen", start_s=start, end_s=end, detail=f"{end - start:.2f} s without motion")
            )
    if p.audio is not None and expect_audio is not False:
        severity: Severity = "error" if expect_audio else "warning"
        for start, end in detections.silence:
            found.append(
                Finding(
                    kind="silence",
                    severity=severity,
                    start_s=start,
                    end_s=end,
                    detail=f"{end - start:.2f} s below {thresholds.silence_noise_db:g} dB",
                )
            )
    if detections.errors:
        shown = "\n".join(detections.errors[:_MAX_ERROR_LINES])
        found.append(
            Finding(kind="decode_error", detail=f"{len(detections.errors)} decoder error line(s):\n{shown}")
        )
    peak = loudness.true_peak_dbtp if loudness is not None else None
    if peak is not None and peak > thresholds.max_true_peak_dbtp:
        found.append(
            Finding(
                kind="true_peak",
                severity="warning",
                detail=f"true peak {peak:.1f} dBTP above {thresholds.max_true_peak_dbtp:g} dBTP",
            )
        )
    return found


def check(
    path: str | Path,
    expect_duration: float | None = None,
    expect_audio: bool | None = None,
    *,
    thresholds: QCThresholds | None = None,
    duration_tolerance_s: float | None = None,
    timeout: float = 600.0,
    probed: Probe | None = None,
    loudness: Loudness | None = None,
) -> QCReport:
    """Check a clip or master for black or frozen stretches, silence, missing audio, length, damage.

    ``expect_duration`` is compared within ``duration_tolerance_s`` (default one frame);
    ``expect_audio=True`` makes a missing or silent track an error, ``False`` ignores silence.
    A missing or unreadable file raises MediaError; a file that decodes with errors is reported.
    ``probed`` and ``loudness`` reuse what the caller already knows of the file (a stitched
    master's probe and level), so it is neither probed nor measured again.

    Example::

        report = check("draft.mp4", expect_duration=5, expect_audio=True)
        report.passed, [f.kind for f in report.findings]
    """
    limits = thresholds or QCThresholds()
    p = probed if probed is not None else probe(path)
    if p.video is None and p.audio is None:
        raise MediaError(f"{path}: neither video nor audio to check")
    return report_for(
        p,
        detect(p, limits, timeout=timeout),
        loudness,
        expect_duration=expect_duration,
        expect_audio=expect_audio,
        thresholds=limits,
        duration_tolerance_s=duration_tolerance_s,
        timeout=timeout,
    )


def detect(p: Probe, thresholds: QCThresholds, *, timeout: float = 600.0) -> Detections:
    """One decode of the probed file through the detectors; a damaged file is an error line."""
    end_of_file = p.video_duration if p.video is not None else p.duration
    try:
        stderr = ffmpeg(detect_args(p, thresholds), timeout=timeout, what=f"QC decode of {p.path}")
    except MediaError as exc:
        # ffmpeg gave up part-way: the file is damaged. That is a finding, not a crash.
        return Detections(errors=(str(exc),))
    return parse_detections(stderr, end_of_file)


def report_for(
    p: Probe,
    detections: Detections,
    loudness: Loudness | None,
    *,
    expect_duration: float | None,
    expect_audio: bool | None,
    thresholds: QCThresholds,
    duration_tolerance_s: float | None,
    timeout: float = 600.0,
) -> QCReport:
    """The report on a probed file from its ``detections`` (measuring its loudness when not given)."""
    rate = p.video.frame_rate if p.video is not None else None
    tolerance = (
        duration_tolerance_s if duration_tolerance_s is not None else (float(1 / rate) if rate else 0.04)
    )
    tolerance += 1e-3  # ffprobe rounds durations to the microsecond, and timestamps to their time base
    if p.audio is None:
        loudness = None
    elif loudness is None:
        loudness = measure_loudness(p.path, timeout=timeout)
    if loudness is not None and expect_audio and loudness.integrated_lufs is None and not detections.silence:
        # Silent throughout but shorter than silence_min_s, so silencedetect said nothing;
        # ebur128 measuring no programme at all is the same defect.
        detections = detections.model_copy(update={"silence": ((0.0, p.audio_duration or 0.0),)})
    found = findings_for(
        p,
        detections,
        loudness,
        expect_duration=expect_duration,
        expect_audio=expect_audio,
        thresholds=thresholds,
        duration_tolerance_s=tolerance,
    )
    return QCReport(
        path=p.path,
        passed=not any(f.severity == "error" for f in found),
        findings=tuple(found),
        duration_s=p.duration,
        video_s=p.video_duration if p.video is not None else None,
        audio_s=p.audio_duration,
        has_audio=p.audio is not None,
        frame_rate=float(rate) if rate else None,
        integrated_lufs=loudness.integrated_lufs if loudness else None,
        true_peak_dbtp=loudness.true_peak_dbtp if loudness else None,
        loudness_range_lu=loudness.loudness_range_lu if loudness else None,
        expect_duration_s=expect_duration,
        expect_audio=expect_audio,
        thresholds=thresholds,
    )
