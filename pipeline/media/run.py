"""Running ffmpeg and ffprobe: argument lists, a timeout, stderr captured and translated.

ffmpeg-python only *builds* commands (``.compile()``); this module is the one place they run.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
from collections.abc import Sequence

from pipeline.errors import DiskFull, MediaError

#: Default limit for one ffmpeg command; long encodes pass their own.
DEFAULT_TIMEOUT_S = 600.0
STDERR_TAIL_LINES = 15


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def require_binary(name: str) -> str:
    """Absolute path of ``name`` (ffmpeg, ffprobe) or a MediaError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MediaError(f"{name} not found on PATH: install it (Debian: apt-get install -y ffmpeg)")
    return path


def run_media_command(
    args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S, what: str = "ffmpeg"
) -> subprocess.CompletedProcess[str]:
    """Run an ffmpeg/ffprobe argument list; raise MediaError with stderr's tail on failure.

    ``args[0]`` is the binary name; stdout and stderr are captured in full (never a pipe left
    undrained), stdin is closed so ffmpeg never waits for a keypress.
    """
    argv = [require_binary(args[0]), *args[1:]]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise MediaError(f"{what} timed out after {timeout:.0f} s", stderr_tail=_tail(stderr)) from exc
    if os.strerror(errno.ENOSPC) in proc.stderr:
        # ffmpeg says a full disk only in its stderr — and may exit 0 when the write that failed
        # was the file's close: the output is then incomplete whatever the exit code says.
        raise DiskFull(f"{what}: no space left on the device ({_tail(proc.stderr, 2)})")
    if proc.returncode != 0:
        raise MediaError(f"{what} failed (exit {proc.returncode})", stderr_tail=_tail(proc.stderr))
    return proc


def ffmpeg(args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S, what: str = "ffmpeg") -> str:
    """Run ``ffmpeg -hide_banner -nostdin <args>`` and return its stderr (filters report there)."""
    proc = run_media_command(["ffmpeg", "-hide_banner", "-nostdin", *args], timeout=timeout, what=what)
    return proc.stderr


@functools.cache
def ffmpeg_version() -> str:
    """The first line of ``ffmpeg -version`` (what a cached verdict about ffmpeg depends on)."""
    proc = run_media_command(["ffmpeg", "-version"], timeout=30, what="ffmpeg -version")
    return proc.stdout.splitlines()[0] if proc.stdout else ""
