"""``klingflow generate`` end to end against the in-process sandbox, and its exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_NOPERM, EXIT_USAGE
from pipeline.media.probe import probe


def test_generate_leaves_a_clip_matching_the_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "generate",
            "--prompt",
            "Shot 1: a red kite rises. Shot 2: it lands on the beach",
            "--duration",
            "3",
            "--tier",
            "standard",
            "--audio",
            "--seed",
            "4",
            "--out",
            str(tmp_path),
            "--latency-scale",
            "0.005",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (clip,) = tmp_path.glob("*.mp4")
    info = probe(clip)
    assert info.video is not None and (info.video.width, info.video.height) == (1920, 1080)
    assert info.audio is not None and info.audio.codec_name == "aac"
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert f"file:       {clip}" in out and "resolution: 1920x1080" in out and "audio:      yes" in out


def test_generate_refuses_runcomfy_without_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "x", "--provider", "runcomfy"]) == EXIT_NOPERM
    assert "RUNCOMFY_TOKEN" in capsys.readouterr().err


def test_generate_duration_outside_the_range_is_a_usage_error() -> None:
    assert main(["generate", "--prompt", "x", "--duration", "16"]) == EXIT_USAGE
