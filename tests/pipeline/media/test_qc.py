"""Quality checks: planted defects are found, clean clips pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import MediaError
from pipeline.media.probe import FormatInfo, Probe, Stream
from pipeline.media.qc import Detections, QCReport, QCThresholds, check, findings_for, parse_detections


def test_a_clean_clip_passes(qc_clips: dict[str, Path]) -> None:
    report = check(qc_clips["clean"], expect_duration=4.0, expect_audio=True)
    assert report.passed, report.findings
    assert report.findings == ()
    assert report.integrated_lufs is not None
    assert report.true_peak_dbtp is not None
    # JSON-serialisable, for manifests.
    assert QCReport.model_validate(json.loads(report.model_dump_json())) == report


def test_a_black_stretch_is_found(qc_clips: dict[str, Path]) -> None:
    report = check(qc_clips["black"], expect_duration=4.0, expect_audio=True)
    assert not report.passed
    (black,) = report.of_kind("black")
    assert black.start_s == pytest.approx(1.0, abs=0.05)
    assert black.end_s == pytest.approx(2.5, abs=0.1)
    assert not report.of_kind("frozen")  # black is also static: reported once


def test_a_frozen_stretch_is_found(qc_clips: dict[str, Path]) -> None:
    report = check(qc_clips["frozen"], expect_duration=4.0, expect_audio=True)
    assert not report.passed
    (frozen,) = report.of_kind("frozen")
    assert frozen.start_s == pytest.approx(1.0, abs=0.3)
    assert frozen.end_s == pytest.approx(3.0, abs=0.1)
    assert not report.of_kind("black")


def test_missing_audio_fails_only_when_audio_was_asked_for(qc_clips: dict[str, Path]) -> None:
    asked = check(qc_clips["no_audio"], expect_audio=True)
    assert not asked.passed
    assert [f.kind for f in asked.findings] == ["missing_audio"]
    assert check(qc_clips["no_audio"], expect_audio=False).passed


def test_a_silent_track_where_audio_was_asked_for_fails(qc_clips: dict[str, Path]) -> None:
    report = check(qc_clips["silent"], expect_audio=True)
    assert not report.passed
    (silence,) = report.of_kind("silence")
    assert silence.start_s == 0
    assert silence.end_s == pytest.approx(4.0, abs=0.05)
    assert check(qc_clips["silent"], expect_audio=False).passed


def test_a_wrong_duration_fails(qc_clips: dict[str, Path]) -> None:
    report = check(qc_clips["clean"], expect_duration=5.0)
    assert [f.kind for f in report.findings] == ["duration"]


def test_a_damaged_file_reports_decode_errors(qc_clips: dict[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(qc_clips["clean"].read_bytes())
    # Overwrite media data in the middle (the moov index at the end stays intact).
    for at in range(len(data) // 3, len(data) // 3 + 4000, 7):
        data[at] = 0xFF
    damaged.write_bytes(bytes(data))
    report = check(damaged, expect_audio=True)
    assert not report.passed
    assert report.of_kind("decode_error")


def test_a_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such media file"):
        check(tmp_path / "missing.mp4")


def _probe(video_s: float, audio_s: float | None) -> Probe:
    streams = [
        Stream(index=0, codec_type="video", avg_frame_rate="25/1", duration=video_s, width=2, height=2)
    ]
    if audio_s is not None:
        streams.append(Stream(index=1, codec_type="audio", duration=audio_s))
    return Probe(path="x.mp4", format=FormatInfo(format_name="mp4", duration=video_s), streams=tuple(streams))


def test_audio_and_video_lengths_must_agree_within_a_frame() -> None:
    kw = {
        "expect_duration": None,
        "expect_audio": True,
        "thresholds": QCThresholds(),
        "duration_tolerance_s": 0.04,
    }
    assert findings_for(_probe(5.0, 5.03), Detections(), None, **kw) == []  # type: ignore[arg-type]
    (finding,) = findings_for(_probe(5.0, 5.2), Detections(), None, **kw)  # type: ignore[arg-type]
    assert finding.kind == "av_length"


def test_detector_output_is_parsed_into_intervals() -> None:
    stderr = "\n".join(
        [
            "[blackdetect @ 0x1] [info] black_start:1 black_end:2.5 black_duration:1.5",
            "[freezedetect @ 0x2] [info] lavfi.freezedetect.freeze_start: 3.2",
            "[freezedetect @ 0x2] [info] lavfi.freezedetect.freeze_duration: 1.1",
            "[freezedetect @ 0x2] [info] lavfi.freezedetect.freeze_end: 4.3",
            "[silencedetect @ 0x3] [info] silence_start: -0.0005",
            "[silencedetect @ 0x3] [info] silence_end: 2 | silence_duration: 2",
            "[silencedetect @ 0x3] [info] silence_start: 6",
            "[h264 @ 0x4] [error] error while decoding MB 13 8",
            "[info] frame=  84 fps=0.0",
        ]
    )
    d = parse_detections(stderr, end_of_file=8.0)
    assert d.black == ((1.0, 2.5),)
    assert d.frozen == ((3.2, 4.3),)
    assert d.silence == ((0.0, 2.0), (6.0, 8.0))  # the last runs to the end of the file
    assert d.errors == ("[h264 @ 0x4] [error] error while decoding MB 13 8",)
