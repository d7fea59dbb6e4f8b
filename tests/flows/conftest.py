"""One Prefect test harness (a temporary ephemeral API and database) for the flow tests, and the
sandbox and run environment the render flow tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
