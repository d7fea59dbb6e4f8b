"""Processes on Linux (from /proc): children to stop, and a process named by pid *and* start time.

A pid alone can name a process that has died and been reused by another one; the pair (pid,
start time in clock ticks since boot, field 22 of ``/proc/PID/stat``) cannot, which is what lets
``klingflow cancel`` signal the process rendering a run without risking a stranger.

Also the process-wide handler of the signals that stop a run (SIGINT, SIGTERM), which a library
may replace and the flow takes back (:func:`reclaim_stop_signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

#: The signals that stop a run the way Ctrl-C does (``timeout``, ``docker stop``, ``klingflow cancel``).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
StopHandler = Callable[[signal.Signals], None]
_stop_handler: tuple[asyncio.AbstractEventLoop, StopHandler] | None = None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (after the command name, which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int, *, direct_only: bool = False) -> list[int]:
    """The living children of ``pid`` and, unless ``direct_only``, theirs, recursively."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    if direct_only:
        return children.get(pid, [])
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if there is no such process."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    with contextlib.suppress(IndexError, ValueError):
        return int(fields[19])  # field 22 of proc(5); fields[0] is field 3
    return None


def is_running(pid: int, started: int | None) -> bool:
    """``pid`` is alive (not a zombie) and, when ``started`` is given, is the process that
    started then — not a later one that reused its pid."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):  # a zombie has finished: only its exit status is left
        return False
    return started is None or start_time(pid) == started


def signal_process(pid: int, started: int | None, sig: signal.Signals) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process that started at ``started``.

    Through a pidfd where the kernel has them: once opened it names that very process, so the
    start time checked after opening it cannot belong to a successor that reused the pid.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfd (old kernel, seccomp): check, then signal by pid
        if not is_running(pid, started):
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True
    try:
        if not is_running(pid, started):
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False
        return True
    finally:
        os.close(fd)


def handle_stop_signals(handler: StopHandler) -> None:
    """Call ``handler(signal)`` on the running event loop for SIGINT and SIGTERM.

    Call from the main thread, inside the loop. Replaces Python's KeyboardInterrupt and the
    default termination, so the handler decides how the process ends.
    """
    global _stop_handler
    loop = asyncio.get_running_loop()
    _stop_handler = (loop, handler)
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, handler, sig)


def reclaim_stop_signals() -> None:
    """Install the registered stop handler again, if there is one.

    Prefect's flow engine installs a SIGTERM handler of its own as a flow starts, which raises
    ``TerminationSignal`` wherever the main thread happens to be (a traceback, and a crash
    handler that talks to a server that may be stopping too); the render flow calls this first
    thing so that SIGTERM ends a run like Ctrl-C does. Prefect puts back the handler it found
    when the flow ends, which is ours.
    """
    if _stop_handler is None:
        return
    loop, handler = _stop_handler
    if loop.is_closed():
        return

    def install() -> None:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, handler, sig)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop and threading.current_thread() is threading.main_thread():
        install()
    else:  # the flow runs on another loop or thread: the handler's loop installs it
        loop.call_soon_threadsafe(install)


def forget_stop_signals() -> None:
    """Drop the registered stop handler (its loop has ended)."""
    global _stop_handler
    _stop_handler = None
