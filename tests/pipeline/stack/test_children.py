"""Child processes of the stack: console scripts found, logs tailed, process groups stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.stack.children import console_script, stop_group, tail


def test_console_scripts_come_from_this_environment_else_the_path() -> None:
    assert console_script("klingflow") == str(Path(sys.executable).with_name("klingflow"))
    assert console_script("no-such-program-here") == "no-such-program-here"


def test_tail_keeps_the_last_lines_and_tolerates_a_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert tail(log, 3) == "line 47\nline 48\nline 49"
    assert tail(tmp_path / "missing.log") == ""


def test_stop_group_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 30  # start-up guard, not a timing assertion
    while not ready.exists():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    stop_group(proc, signal.SIGTERM, timeout=0.5)
    assert proc.returncode == -signal.SIGKILL
    stop_group(proc)  # a stopped process: nothing to do
