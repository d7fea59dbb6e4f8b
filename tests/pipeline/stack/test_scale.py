"""The scale stack's small parts (the whole stack runs in tests/flows/test_scale.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from pipeline.errors import StackError
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.stack.postgres import PostgresCluster
from pipeline.stack.sandbox import SandboxProcess
from pipeline.stack.scale import (
    Limits,
    ScaleStack,
    draft_specs,
    generous_sandbox,
    pin,
    sandbox_env,
    wait_for,
)


def test_sandbox_env_points_at_the_process(tmp_path: Path) -> None:
    sandbox = SandboxProcess.probed(SandboxConfig(), tmp_path / "sb")
    sandbox.port = 4321
    assert sandbox_env(sandbox, latency_scale=0.05) == {
        "KLINGFLOW_SANDBOX_URL": "http://127.0.0.1:4321/v1",
        "KLINGFLOW_SANDBOX_LATENCY_SCALE": "0.05",
    }


def test_wait_for_names_what_never_came() -> None:
    seen: list[int] = []

    def never() -> bool:
        seen.append(1)
        return False

    with pytest.raises(StackError, match="the moon: not after 0 s") as failure:
        wait_for("the moon", never, 0, lambda: "worker log")
    assert failure.value.log_tail == "worker log"
    assert seen
    wait_for("at once", lambda: True, 0)


def test_a_stack_not_started_says_so(tmp_path: Path) -> None:
    no_cluster = cast("PostgresCluster", None)  # start() is never called: nothing touches it
    stack = ScaleStack(tmp_path, no_cluster, Limits(1, 1.0, 1))
    with pytest.raises(StackError, match="not running"):
        _ = stack.api_url
    with pytest.raises(StackError, match="not running"):
        stack.keys("x")
    stack.stop()  # nothing started: nothing to stop


def test_pin_puts_a_process_and_its_later_children_on_one_core() -> None:
    # The child starts a grandchild only after it was pinned: the pin is inherited (what makes
    # a pinned worker's flow runs and their ffmpeg stay on its core).
    code = "import os, subprocess, sys, time; time.sleep(0.5); print(sorted(os.sched_getaffinity(0))); sys.stdout.flush(); subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'])"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    core = max(os.sched_getaffinity(0))
    pin(child.pid, core)
    out, _ = child.communicate(timeout=60)
    assert out.split() == [f"[{core}]", f"[{core}]"]


def test_pin_says_which_process_it_could_not_pin() -> None:
    with pytest.raises(StackError, match="could not pin process 999999999"):
        pin(999999999, 0)


def test_generous_sandbox_and_draft_specs(tmp_path: Path) -> None:
    config = generous_sandbox(0.001, 0.5, 64, seed=7)
    assert (config.latency_scale, config.render_scale, config.slots, config.faults.seed) == (
        0.001,
        0.5,
        64,
        7,
    )
    assert config.max_in_flight >= 10_000 and config.submit_rate_per_s >= 10_000
    script = tmp_path / "s.yaml"
    script.write_text(
        "version: 1\nname: s\nnarratives:\n  - id: a\n    continuity: independent\n    shots:\n"
        "      - {duration: 8, action: go}\n      - {duration: 12, action: stop}\n"
        "budget: {limit_usd: 100, finals: 0}\n"
    )
    assert [spec.duration for spec in draft_specs(script)] == [8, 12]
