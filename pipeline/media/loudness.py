"""Loudness: two-pass ``loudnorm`` (measure, then apply linearly) and ``ebur128`` measurement."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import ffmpeg as ffmpeg_builder
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import MediaError
from pipeline.media.command import to_args
from pipeline.media.run import ffmpeg

#: ebur128 reports this (the gate's floor) for silence; below it there is nothing to normalise.
SILENCE_LUFS = -70.0


class LoudnormMeasurement(BaseModel):
    """What pass 1 of ``loudnorm`` measured (its JSON, numbers parsed)."""

    model_config = ConfigDict(frozen=True)

    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float

    @property
    def is_silent(self) -> bool:
        """True when there is no audible programme to normalise (loudnorm reports -inf or -70)."""
        return not math.isfinite(self.input_i) or self.input_i <= SILENCE_LUFS


class Loudness(BaseModel):
    """Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) of a file's audio.

    A value is None when ebur128 had nothing to measure (``-inf``, e.g. digital silence).
    """

    model_config = ConfigDict(frozen=True)

    integrated_lufs: float | None
    loudness_range_lu: float | None
    true_peak_dbtp: float | None


def loudnorm_options(
    target_lufs: float,
    true_peak_db: float,
    lra_lu: float,
    measured: LoudnormMeasurement | None = None,
) -> dict[str, object]:
    """Keyword arguments of the ``loudnorm`` filter: pass 1 prints JSON, pass 2 applies ``measured``.

    Pass 2 asks for ``linear=true``: one gain for the whole master, so its dynamics are kept
    (loudnorm itself falls back to dynamic mode when the true-peak limit makes that impossible).
    """
    opts: dict[str, object] = {"I": target_lufs, "TP": true_peak_db, "LRA": lra_lu}
    if measured is None:
        opts["print_format"] = "json"
        return opts
    opts.update(
        measured_I=measured.input_i,
        measured_TP=measured.input_tp,
        measured_LRA=measured.input_lra,
        measured_thresh=measured.input_thresh,
        offset=measured.target_offset,
        linear="true",
        print_format="summary",
    )
    return opts


def parse_loudnorm_json(stderr: str) -> LoudnormMeasurement:
    """The measurement from pass 1's stderr (the last JSON object loudnorm printed)."""
    start = stderr.rfind("{")
    end = stderr.rfind("}")
    if start < 0 or end < start:
        raise MediaError("loudnorm printed no measurement", stderr_tail=stderr[-2000:])
    try:
        raw = json.loads(stderr[start : end + 1])
        # loudnorm prints numbers as strings, "-inf" included; float() reads both.
        return LoudnormMeasurement(
            input_i=float(raw["input_i"]),
            input_tp=float(raw["input_tp"]),
            input_lra=float(raw["input_lra"]),
            input_thresh=float(raw["input_thresh"]),
            target_offset=float(raw["target_offset"]),
        )
    except (json.JSONDecodeError, KeyError, ValueError, ValidationError) as exc:
        raise MediaError(f"unreadable loudnorm measurement ({exc})", stderr_tail=stderr[-2000:]) from exc


_SUMMARY_VALUE = {
    "integrated_lufs": re.compile(r"^\s*I:\s*(\S+)\s+LUFS", re.MULTILINE),
    "loudness_range_lu": re.compile(r"^\s*LRA:\s*(\S+)\s+LU\b", re.MULTILINE),
    "true_peak_dbtp": re.compile(r"^\s*Peak:\s*(\S+)\s+dBFS", re.MULTILINE),
}


def _finite(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def parse_ebur128_summary(stderr: str) -> Loudness:
    """Integrated loudness, range and true peak from the ``Summary:`` that ebur128 prints last."""
    at = stderr.rfind("Summary:")
    if at < 0:
        raise MediaError("ebur128 printed no summary", stderr_tail=stderr[-2000:])
    summary = stderr[at:]
    values: dict[str, float | None] = {}
    for key, pattern in _SUMMARY_VALUE.items():
        match = pattern.search(summary)
        values[key] = _finite(match.group(1)) if match else None
    integrated = values["integrated_lufs"]
    # ebur128 reports its -70 LUFS gate for silence: that is "nothing measured", not a level.
    if integrated is not None and integrated <= SILENCE_LUFS:
        integrated = None
    return Loudness(
        integrated_lufs=integrated,
        loudness_range_lu=values["loudness_range_lu"],
        true_peak_dbtp=values["true_peak_dbtp"],
    )


def ebur128_args(path: str | Path) -> list[str]:
    """ffmpeg arguments that decode only the first audio stream of ``path`` through ebur128."""
    stream = ffmpeg_builder.input(str(path))["a:0"].filter("ebur128", peak="true")
    return to_args(ffmpeg_builder.output(stream, "-", f="null"), overwrite=False)


def measure_loudness(path: str | Path, *, timeout: float = 600.0) -> Loudness:
    """Measure ``path``'s first audio stream with ebur128 (an audio-only decode)."""
    return parse_ebur128_summary(ffmpeg(ebur128_args(path), timeout=timeout, what=f"ebur128 {path}"))
