"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory."""
    return ROOT


@pytest.fixture(scope="session")
def example_scripts() -> list[Path]:
    """Every example render script under configs/."""
    return sorted((ROOT / "configs").glob("*.yaml"))
