"""Parsing what loudnorm and ebur128 print."""

from __future__ import annotations

import pytest

from pipeline.errors import MediaError
from pipeline.media.loudness import loudnorm_options, parse_ebur128_summary, parse_loudnorm_json

LOUDNORM_STDERR = """[Parsed_loudnorm_0 @ 0x5581] \n{
\t"input_i" : "-21.85",
\t"input_tp" : "-16.82",
\t"input_lra" : "4.70",
\t"input_thresh" : "-31.89",
\t"output_i" : "-16.05",
\t"output_tp" : "-11.00",
\t"output_lra" : "3.90",
\t"output_thresh" : "-26.07",
\t"normalization_type" : "dynamic",
\t"target_offset" : "-0.13"
}
"""

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


def test_loudnorm_json_is_parsed() -> None:
    m = parse_loudnorm_json(LOUDNORM_STDERR)
    assert (m.input_i, m.input_tp, m.input_lra, m.input_thresh, m.target_offset) == (
        -21.85,
        -16.82,
        4.7,
        -31.89,
        -0.13,
    )
    assert not m.is_silent


def test_loudnorm_of_silence_is_recognised() -> None:
    m = parse_loudnorm_json(LOUDNORM_STDERR.replace('"-21.85"', '"-inf"'))
    assert m.is_silent


def test_missing_loudnorm_output_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="no measurement"):
        parse_loudnorm_json("nothing here")


def test_ebur128_summary_is_parsed_from_the_last_summary() -> None:
    loud = parse_ebur128_summary(EBUR128_STDERR)
    assert (loud.integrated_lufs, loud.loudness_range_lu, loud.true_peak_dbtp) == (-16.1, 8.8, -11.0)


def test_ebur128_of_silence_has_no_level() -> None:
    silent = EBUR128_STDERR.replace("-16.1 LUFS", "-70.0 LUFS").replace("-11.0 dBFS", "-inf dBFS")
    loud = parse_ebur128_summary(silent)
    assert loud.integrated_lufs is None
    assert loud.true_peak_dbtp is None


def test_second_pass_options_carry_the_measurement() -> None:
    m = parse_loudnorm_json(LOUDNORM_STDERR)
    opts = loudnorm_options(-16, -1.5, 11, m)
    assert opts["measured_I"] == -21.85
    assert opts["linear"] == "true"
    assert loudnorm_options(-16, -1.5, 11)["print_format"] == "json"
