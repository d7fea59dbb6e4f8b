"""One Prefect test harness (a temporary ephemeral API and database) for the flow tests, and the
sandbox and run environment the render flow tests share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox

from ..pipeline.render.conftest import SCALE


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """Start Prefect's test harness once per session (it costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_sandbox(SandboxConfig(latency_scale=SCALE, render_scale=0.1, slots=16)) as handle:
        yield handle


@pytest.fixture
def run_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: SandboxHandle) -> Path:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KLINGFLOW_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("KLINGFLOW_SANDBOX_LATENCY_SCALE", str(SCALE))
    monkeypatch.setenv("KLINGFLOW_SUBMIT_RATE_PER_S", "50")
    monkeypatch.setenv("KLINGFLOW_SUBMIT_BURST", "8")
    monkeypatch.setenv("KLINGFLOW_GLOBAL_LIMITS", "true")  # the harness is a real API: use its limits
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    return tmp_path


async def logs_and_task_runs(
    flow_run_id: Any, wait_for: str | None = "delivered"
) -> tuple[list[str], list[str]]:
    """The flow run's log messages (once a line with ``wait_for`` came, if given) and its task
    runs' names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        messages: list[str] = []
        for _ in range(100 if wait_for else 1):  # the API handler sends logs in batches, in the background
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            messages = [log.message for log in logs]
            if wait_for is None or any(wait_for in m for m in messages):
                break
            await asyncio.sleep(0.2)
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return messages, [t.name for t in task_runs]


@pytest.fixture
def prefect_at_info() -> Iterator[None]:
    """Prefect's loggers at INFO, as ``klingflow run`` leaves them (the tests' conftest quiets
    them with PREFECT_LOGGING_LEVEL=WARNING)."""
    logger = logging.getLogger("prefect")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)
