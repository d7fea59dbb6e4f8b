"""Parsing what ebur128 prints, and the level plan made from it."""

from __future__ import annotations

import pytest

from pipeline.errors import MediaError
from pipeline.media.loudness import Loudness, parse_ebur128_summary, plan_level

EBUR128_STDERR = """[Parsed_ebur128_0 @ 0x55] t: 3.0 TARGET:-23 LUFS M: -20.1 S: -20.0 I: -20.0 LUFS
[Parsed_ebur128_0 @ 0x55] Summary:

  Integrated loudness:
    I:         -16.1 LUFS
    Threshold: -26.4 LUFS

  Loudness range:
    LRA:         8.8 LU
    Threshold:  -36.3 LUFS

  True peak:
    Peak:      -11.0 dBFS
"""


def test_ebur128_summary_is_parsed_from_the_last_summary() -> None:
    loud = parse_ebur128_summary(EBUR128_STDERR)
    assert (loud.integrated_lufs, loud.loudness_range_lu, loud.true_peak_dbtp) == (-16.1, 8.8, -11.0)


def test_ebur128_of_silence_has_no_level() -> None:
    silent = EBUR128_STDERR.replace("-16.1 LUFS", "-70.0 LUFS").replace("-11.0 dBFS", "-inf dBFS")
    loud = parse_ebur128_summary(silent)
    assert loud.integrated_lufs is None
    assert loud.true_peak_dbtp is None


def test_ebur128_without_a_summary_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="no summary"):
        parse_ebur128_summary("nothing here")


def _source(lufs: float | None, peak: float | None) -> Loudness:
    return Loudness(integrated_lufs=lufs, loudness_range_lu=4.0, true_peak_dbtp=peak)


def test_a_gain_that_keeps_the_peak_under_the_ceiling_is_linear() -> None:
    level = plan_level(_source(-28.9, -14.8), -16.0, -1.5)
    assert level is not None
    assert (level.gain_db, level.limit) == (12.9, False)
    # BS.1770 is linear: the master measures its source moved by the gain.
    assert level.expected == _source(-16.0, -1.9)


def test_a_gain_that_would_push_the_peak_over_the_ceiling_asks_for_the_limiter() -> None:
    level = plan_level(_source(-28.9, -14.3), -16.0, -1.5)
    assert level is not None
    assert level.limit
    assert level.expected is None  # limited: the master has to be measured


def test_a_cut_never_needs_the_limiter_and_silence_needs_no_level() -> None:
    level = plan_level(_source(-9.0, -0.5), -16.0, -1.5)
    assert level is not None
    assert (level.gain_db, level.limit) == (-7.0, False)
    assert plan_level(_source(None, None), -16.0, -1.5) is None
