"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports Prefect: a private Prefect home, no analytics (no network here), and
# quiet logs. Tests that need the engine start one harness per session (tests/flows/conftest.py).
_PREFECT_HOME = tempfile.mkdtemp(prefix="klingflow-tests-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory."""
    return ROOT


@pytest.fixture(scope="session")
def example_scripts() -> list[Path]:
    """Every example render script under configs/."""
    return sorted((ROOT / "configs").glob("*.yaml"))
