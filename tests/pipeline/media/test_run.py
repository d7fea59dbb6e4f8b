"""Running ffmpeg: failures become MediaError with stderr's tail, a full disk DiskFull."""

from __future__ import annotations

import pytest

from pipeline.errors import EXIT_CANTCREAT, DiskFull, MediaError
from pipeline.media import run as media_run
from pipeline.media.run import ffmpeg, ffmpeg_version, require_binary, run_media_command


def test_require_binary_finds_ffmpeg_and_explains_a_missing_one() -> None:
    assert require_binary("ffmpeg").endswith("/ffmpeg")
    with pytest.raises(MediaError, match="kf-no-such-binary not found on PATH: install it"):
        require_binary("kf-no-such-binary")


def test_a_failing_command_is_a_media_error_with_the_stderr_tail() -> None:
    with pytest.raises(MediaError) as caught:
        ffmpeg(["-i", "/nonexistent/kf-input.mp4", "-f", "null", "-"], what="probe input")
    error = caught.value
    assert not isinstance(error, DiskFull)
    assert str(error).startswith("probe input failed (exit ")
    assert "kf-input.mp4" in error.stderr_tail
    assert error.stderr_tail in str(error)
    assert len(error.stderr_tail.splitlines()) <= media_run.STDERR_TAIL_LINES


def test_no_space_left_on_device_is_disk_full() -> None:
    # /dev/full answers every write with ENOSPC, which ffmpeg reports in its stderr. Several
    # frames of raw video overflow ffmpeg's output buffer, so the write fails while muxing and
    # ffmpeg exits non-zero (a single small frame fails only at close, where ffmpeg 5.1 exits 0).
    args = ["-f", "lavfi", "-i", "color=c=red:s=640x480:d=0.2", "-f", "rawvideo", "-y", "/dev/full"]
    with pytest.raises(DiskFull) as caught:
        ffmpeg(args, what="write frame")
    assert caught.value.exit_code == EXIT_CANTCREAT
    assert str(caught.value).startswith("write frame: no space left on the device")


def test_success_returns_the_completed_process_and_stderr() -> None:
    proc = run_media_command(["ffprobe", "-version"], what="ffprobe")
    assert proc.returncode == 0 and proc.stdout.startswith("ffprobe version")
    stderr = ffmpeg(["-f", "lavfi", "-i", "anullsrc", "-t", "0.1", "-f", "null", "-"])
    assert isinstance(stderr, str)


def test_ffmpeg_version_is_the_first_line_of_ffmpeg_version() -> None:
    version = ffmpeg_version()
    assert version.startswith("ffmpeg version ")
    assert "\n" not in version
    assert ffmpeg_version() is version  # cached


def test_the_stderr_tail_keeps_the_last_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(40)) + "\n\n"
    tail = media_run._tail(text, 3)
    assert tail == "line 37\nline 38\nline 39"


def test_a_full_disk_that_ffmpeg_reports_with_exit_0_is_still_a_full_disk() -> None:
    # A single small frame fails only when the file is closed: ffmpeg 5.1 logs the error and
    # exits 0, leaving an incomplete output behind.
    with pytest.raises(DiskFull):
        ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                "color=c=red:s=320x240:d=1",
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-y",
                "/dev/full",
            ]
        )
