"""The run lock: one process per run, and it names its holder (pid and start time) for cancel."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import RunBusy
from pipeline.processes import is_running, start_time
from pipeline.render.limits import LocalLimits
from pipeline.render.runlock import (
    CancelRequest,
    SubmitGate,
    cancel_requested,
    hold_run,
    read_holder,
    request_cancel,
)


def test_the_holder_is_named_while_the_lock_is_held_and_nobody_after(tmp_path: Path) -> None:
    assert read_holder(tmp_path) is None
    with hold_run(tmp_path, "r1"):
        holder = read_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid()
        assert holder.started == start_time(os.getpid())
    assert read_holder(tmp_path) is None


def test_a_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from pipeline.render.runlock import hold_run\n"
        "with hold_run(Path(sys.argv[1]), 'r1'):\n    print('held', flush=True); time.sleep(60)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        with pytest.raises(RunBusy, match=f"process {other.pid}"), hold_run(tmp_path, "r1"):
            pass
        holder = read_holder(tmp_path)
        assert holder is not None and holder.pid == other.pid
    finally:
        other.kill()
        other.wait()
        if other.stdout is not None:
            other.stdout.close()
    # Killed without a chance to clear its record: the record names nobody any more.
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == other.pid
    assert read_holder(tmp_path) is None


def test_a_reused_pid_is_not_the_holder(tmp_path: Path) -> None:
    """Same pid, another start time: a different process, never signalled as the run's."""
    me = os.getpid()
    started = start_time(me)
    assert started is not None
    (tmp_path / ".lock").write_text(
        json.dumps({"pid": me, "started": started - 1, "host": os.uname().nodename})
    )
    assert read_holder(tmp_path) is None
    assert not is_running(me, started - 1) and is_running(me, started)


def test_a_cancel_request_is_read_once_and_cleared_by_the_next_holder(tmp_path: Path) -> None:
    assert cancel_requested(tmp_path) is None
    request_cancel(tmp_path, CancelRequest(keep_requests=True))
    assert cancel_requested(tmp_path) == CancelRequest(keep_requests=True)
    with hold_run(tmp_path, "r1"):
        assert cancel_requested(tmp_path) is None


def test_a_closed_gate_lets_no_submit_through() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = SubmitGate(LocalLimits(4, 1000.0, 4))
        await asyncio.wait_for(gate.before_submit(), 5)  # open: a turn at once
        gate.close()
        turn = asyncio.ensure_future(gate.before_submit())
        await asyncio.sleep(0.05)
        blocked = not turn.done()
        turn.cancel()
        return True, blocked

    opened, blocked = asyncio.run(scenario())
    assert opened and blocked
