"""One process at a time per run directory, and which process that is.

Two processes rendering one run would race on its jobs (each could take the other's request for
an interrupted one). Across the workers of a Prefect server the flow holds a server-side run lock
(:func:`flows.limits.run_lock`); on one machine this advisory file lock does it. The kernel drops
it when the holder dies, so a killed run never blocks its own resumption.

The lock file also names its holder (pid, start time, host), so that ``klingflow cancel`` can
find the process rendering a run and stop it; the start time guards against a pid reused by
another process after the holder died. ``cancel`` leaves its request (keep the requests at the
provider or not) in ``.cancel`` beside it before it signals, for the run to read as it stops;
the run then closes its :class:`SubmitGate` so that nothing more is bought while it leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import RunBusy
from pipeline.processes import is_running, start_time
from pipeline.render.limits import Limits

LOCK_FILE = ".lock"
CANCEL_FILE = ".cancel"


@dataclass(frozen=True)
class RunHolder:
    """The process holding a run's lock."""

    pid: int
    started: int | None
    host: str

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"


@dataclass(frozen=True)
class CancelRequest:
    """What ``klingflow cancel`` asked of the run it stops."""

    keep_requests: bool = False


@contextlib.contextmanager
def hold_run(run_dir: Path, run_id: str) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the block; RunBusy at once if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(run_dir)
            raise RunBusy(
                f"run {run_id} is being rendered by {holder or 'another process'} right now; wait for "
                f"it to finish (or stop it: klingflow cancel {run_id}), then run again to resume"
            ) from None
        # A cancel addressed to an earlier process of this run is not addressed to this one.
        with contextlib.suppress(FileNotFoundError):
            (run_dir / CANCEL_FILE).unlink()
        me = os.getpid()
        record = {"pid": me, "started": start_time(me), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            # Nobody holds it from here on, even while this process lives on (its summary).
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def read_holder(run_dir: Path) -> RunHolder | None:
    """The living process on this machine that holds ``run_dir``'s lock, if there is one.

    A record left by a killed holder (its pid dead, or reused by a process that started at
    another time) or written on another host names nobody.
    """
    try:
        record = json.loads((run_dir / LOCK_FILE).read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    started = record.get("started")
    holder = RunHolder(
        pid=record["pid"],
        started=started if isinstance(started, int) else None,
        host=str(record.get("host", "")),
    )
    if holder.host != socket.gethostname() or not is_running(holder.pid, holder.started):
        return None
    return holder


def request_cancel(run_dir: Path, request: CancelRequest) -> None:
    """Leave ``request`` for the run's process to read when it is told to stop."""
    partial = run_dir / f"{CANCEL_FILE}.{os.getpid()}.partial"
    partial.write_text(json.dumps({"keep_requests": request.keep_requests}))
    partial.replace(run_dir / CANCEL_FILE)


def cancel_requested(run_dir: Path) -> CancelRequest | None:
    """The cancel request left for this run by ``klingflow cancel``, if any."""
    try:
        record = json.loads((run_dir / CANCEL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return CancelRequest(keep_requests=bool(record.get("keep_requests", False)))


class SubmitGate:
    """The run's limits, plus a gate that :meth:`close` shuts for good: no submit after it.

    A job past its submit turn when the gate closes is not stopped (its reservation and submit
    follow at once, and it is then followed or cancelled like any other); every later turn
    waits forever, so nothing more is reserved or bought while the process leaves.
    """

    def __init__(self, inner: Limits) -> None:
        self.inner = inner
        self.closed = False

    def in_flight(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The inner limits' in-flight slot."""
        return self.inner.in_flight()

    async def before_submit(self) -> None:
        """A submit turn from the inner limits, unless the gate has closed (then never)."""
        if not self.closed:
            await self.inner.before_submit()
        # Checked after the (possibly long) wait for a turn: nothing runs between this return
        # and the engine's reservation, so a closed gate lets no new submit through.
        if self.closed:
            await asyncio.Event().wait()

    def slow_down(self, seconds: float) -> None:
        """Pass a 429's pause on to the inner limits."""
        self.inner.slow_down(seconds)

    def close(self) -> None:
        """No more submits from this run in this process."""
        self.closed = True
