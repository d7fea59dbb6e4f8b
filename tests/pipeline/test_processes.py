"""Processes from /proc: descendants, (pid, start time) identity, guarded signals, stop handlers.

Signals go to child processes only, except the stop-handler tests, which send SIGTERM to this
process while the event loop's handler is installed (checked first) and restore every handler.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from types import FrameType

import pytest

from pipeline import processes
from pipeline.processes import (
    descendants,
    forget_stop_signals,
    handle_stop_signals,
    is_running,
    reclaim_stop_signals,
    signal_process,
    start_time,
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping child process, killed and reaped afterwards."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture
def restored_stop_signals() -> Iterator[None]:
    """The process's SIGINT/SIGTERM handlers and the module's registration, as they were."""
    saved = {sig: signal.getsignal(sig) for sig in processes.STOP_SIGNALS}
    yield
    forget_stop_signals()
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_this_process_is_running_under_its_own_start_time() -> None:
    started = start_time(os.getpid())
    assert isinstance(started, int) and started > 0
    assert is_running(os.getpid(), started)
    assert is_running(os.getpid(), None)
    assert not is_running(os.getpid(), started + 1)  # a later process reusing the pid


def test_a_missing_process_has_no_start_time() -> None:
    with open("/proc/sys/kernel/pid_max") as stream:
        beyond = int(stream.read()) + 1
    assert start_time(beyond) is None
    assert not is_running(beyond, None)
    assert not signal_process(beyond, None, signal.SIGTERM)


def test_descendants_finds_children_and_grandchildren() -> None:
    # The shell prints its background child's pid once that child exists: no waiting on time.
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE)
    try:
        assert shell.stdout is not None
        grandchild = int(shell.stdout.readline())
        assert shell.pid in descendants(os.getpid(), direct_only=True)
        assert grandchild not in descendants(os.getpid(), direct_only=True)
        assert {shell.pid, grandchild} <= set(descendants(os.getpid()))
        assert descendants(shell.pid) == [grandchild]
    finally:
        for pid in descendants(shell.pid):
            os.kill(pid, signal.SIGKILL)
        shell.kill()
        shell.wait()
        assert shell.stdout is not None
        shell.stdout.close()


def test_signal_process_spares_a_process_with_another_start_time(child: subprocess.Popen[bytes]) -> None:
    started = start_time(child.pid)
    assert started is not None
    assert not signal_process(child.pid, started + 1, signal.SIGTERM)
    assert child.poll() is None and is_running(child.pid, started)
    assert signal_process(child.pid, started, signal.SIGTERM)
    assert child.wait() == -signal.SIGTERM


def test_a_zombie_is_not_running(child: subprocess.Popen[bytes]) -> None:
    started = start_time(child.pid)
    child.kill()
    # Wait for the exit without reaping: the child stays a zombie until child.wait().
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert not is_running(child.pid, started)
    assert not signal_process(child.pid, started, signal.SIGTERM)


@pytest.mark.skipif(sys.platform != "linux", reason="loop signal handlers as on Linux")
def test_stop_handler_runs_on_the_loop_and_is_reclaimed(restored_stop_signals: None) -> None:
    received: list[signal.Signals] = []
    foreign: list[int] = []

    def prefect_like(signum: int, frame: FrameType | None) -> None:
        foreign.append(signum)

    async def main() -> None:
        got = asyncio.Event()

        def handler(sig: signal.Signals) -> None:
            received.append(sig)
            got.set()

        handle_stop_signals(handler)
        # A library replaces the handler (as Prefect's flow engine does); reclaiming puts ours back.
        signal.signal(signal.SIGTERM, prefect_like)
        reclaim_stop_signals()
        assert signal.getsignal(signal.SIGTERM) is not prefect_like
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(got.wait(), 30)
        for sig in processes.STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(sig)

    asyncio.run(main())
    assert received == [signal.SIGTERM]
    assert foreign == []


def test_reclaim_without_a_registration_or_after_forget_does_nothing(restored_stop_signals: None) -> None:
    def marker(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("never delivered")

    signal.signal(signal.SIGTERM, marker)
    forget_stop_signals()
    reclaim_stop_signals()
    assert signal.getsignal(signal.SIGTERM) is marker

    async def register() -> None:
        handle_stop_signals(lambda sig: None)
        for sig in processes.STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(sig)

    asyncio.run(register())
    signal.signal(signal.SIGTERM, marker)
    reclaim_stop_signals()  # the handler's loop is closed: nothing to install it on
    assert signal.getsignal(signal.SIGTERM) is marker
