"""Child processes of a local stack: this environment's console scripts, stopping a process group,
the end of a log.

Every service of the stack runs in a process group of its own (``start_new_session=True``), so
that a terminal's Ctrl-C reaches the starter alone, which stops its services in order, and so
that stopping one takes everything it started with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path


def console_script(name: str) -> str:
    """A console script of this environment (``prefect``, ``klingflow``, ``weed``), else ``name``
    as found on PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("" when it cannot be read), for error messages."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal ``proc``'s whole process group and wait for it (SIGKILL if it lingers)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
