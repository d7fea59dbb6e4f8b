"""One process at a time per run directory: a second ``klingflow run`` of one run id stops at once.

Two processes rendering one run would race on its jobs (each could take the other's request for
an interrupted one). Across the workers of a Prefect server the flow holds a server-side run lock
(:func:`flows.limits.run_lock`); on one machine this advisory file lock does it. The kernel drops
it when the holder dies, so a killed run never blocks its own resumption.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import RunBusy


@contextlib.contextmanager
def hold_run(run_dir: Path, run_id: str) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the block; RunBusy at once if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process"
            raise RunBusy(
                f"run {run_id} is being rendered by {holder} right now; wait for it to finish "
                "(or stop it), then run again to resume"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
