"""Loudness: ``ebur128`` measurement and the level plan a master is mixed with.

A master's level is set from one measurement of its clips' own audio (integrated loudness and true
peak, :func:`parse_ebur128_summary`): one linear gain (:func:`plan_level`), applied by ``volume`` in
the command that encodes the master's audio. Only when that gain would push the true peak over the
ceiling is the audio limited first (:func:`limiter_filters`: the gain, then a lookahead limiter run
at four times the sample rate, so it holds inter-sample peaks as ebur128's true peak sees them).
Limiting takes loudness away, so the limited audio is measured and the gain raised until it lands
within ``LIMITED_TOLERANCE_LU`` of the target (on realistic sound the first pass does).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import ffmpeg as ffmpeg_builder
from pydantic import BaseModel, ConfigDict

from pipeline.errors import MediaError
from pipeline.media.command import to_args
from pipeline.media.run import ffmpeg

#: ebur128 reports this (the gate's floor) for silence; below it there is nothing to normalise.
SILENCE_LUFS = -70.0


class Loudness(BaseModel):
    """Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) of a file's audio.

    A value is None when ebur128 had nothing to measure (``-inf``, e.g. digital silence).
    """

    model_config = ConfigDict(frozen=True)

    integrated_lufs: float | None
    loudness_range_lu: float | None
    true_peak_dbtp: float | None

    def shifted(self, gain_db: float) -> Loudness:
        """The loudness of this audio after a linear gain of ``gain_db`` (BS.1770 is linear)."""
        # Rounded as ebur128 prints its values, to a tenth (no 15.999999 in a manifest).
        return Loudness(
            integrated_lufs=None
            if self.integrated_lufs is None
            else round(self.integrated_lufs + gain_db, 1),
            loudness_range_lu=self.loudness_range_lu,
            true_peak_dbtp=None if self.true_peak_dbtp is None else round(self.true_peak_dbtp + gain_db, 1),
        )


#: What a file without audio (or a master of silent clips) measures: nothing.
NO_LOUDNESS = Loudness(integrated_lufs=None, loudness_range_lu=None, true_peak_dbtp=None)


#: The limiter's ceiling sits this far under the requested true peak: AAC then overshoots the
#: limited peak by about as much (measured: -1.8 dBTP limited, -1.5 dBTP after AAC at 192 kb/s).
LIMITER_MARGIN_DB = 0.3
#: How far from the target a limited master may land before its gain is raised again.
LIMITED_TOLERANCE_LU = 0.3
#: Gain corrections tried on limited audio before settling for the closest.
LIMITED_ATTEMPTS = 4
#: The limiter runs at this multiple of 48 kHz: ebur128's true peak oversamples by four too.
_OVERSAMPLE = 4


class LevelPlan(BaseModel):
    """How a master's audio reaches its loudness target, decided from its source measurement.

    ``limit`` False: one ``volume`` of ``gain_db``, and the master measures ``source`` shifted by
    it. ``limit`` True: the gain would put the true peak over the ceiling, so the audio goes
    through :func:`limiter_filters` first and is measured after it.
    """

    model_config = ConfigDict(frozen=True)

    source: Loudness
    target_lufs: float
    true_peak_db: float
    loudness_range_lu: float
    gain_db: float
    limit: bool

    @property
    def expected(self) -> Loudness | None:
        """The master's loudness when it follows from the gain alone (None when limited)."""
        return None if self.limit else self.source.shifted(self.gain_db)


def plan_level(
    source: Loudness, target_lufs: float, true_peak_db: float, loudness_range_lu: float = 11.0
) -> LevelPlan | None:
    """The gain taking ``source`` to ``target_lufs``; None when there is no programme to level.

    The limiter is asked for when the peak after the gain would exceed ``true_peak_db``: the rule
    of ``loudnorm``'s own linear mode, which this replaces (AAC may still overshoot a peak by a few
    tenths of a dB, which QC's ``max_true_peak_dbtp`` allows for).
    """
    if source.integrated_lufs is None:
        return None
    gain = target_lufs - source.integrated_lufs
    peak = source.true_peak_dbtp
    limit = peak is not None and peak + gain > true_peak_db
    return LevelPlan(
        source=source,
        target_lufs=target_lufs,
        true_peak_db=true_peak_db,
        loudness_range_lu=loudness_range_lu,
        gain_db=round(gain, 2),
        limit=limit,
    )


def limiter_filters(stream: Any, gain_db: float, true_peak_db: float, sample_rate: int = 48_000) -> Any:
    """``stream`` (ffmpeg-python audio) raised by ``gain_db`` and limited under ``true_peak_db``.

    ``alimiter`` with ``latency`` compensation keeps every sample where it was (and as many), and
    ``level=false`` stops it from normalising its output back up to full scale.
    """
    ceiling = 10 ** ((true_peak_db - LIMITER_MARGIN_DB) / 20)
    return (
        stream.filter("volume", f"{gain_db:.2f}dB")
        .filter("aresample", sample_rate * _OVERSAMPLE)
        .filter("alimiter", limit=f"{ceiling:.4f}", level="false", latency="true", attack=1, release=50)
        .filter("aresample", sample_rate)
    )


def next_limited_gain(level: LevelPlan, gain_db: float, got: Loudness) -> float | None:
    """The gain to try next after limited audio at ``gain_db`` measured ``got``; None: it is close
    enough (or silent), keep it."""
    if got.integrated_lufs is None or abs(got.integrated_lufs - level.target_lufs) <= LIMITED_TOLERANCE_LU:
        return None
    return round(gain_db + level.target_lufs - got.integrated_lufs, 2)


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
