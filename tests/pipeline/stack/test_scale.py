"""The scale stack's small parts (the whole stack runs in tests/flows/test_scale.py)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from pipeline.errors import StackError
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.stack.postgres import PostgresCluster
from pipeline.stack.sandbox import SandboxProcess
from pipeline.stack.scale import Limits, ScaleStack, sandbox_env, wait_for


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
