"""Every store test runs against SQLite and against PostgreSQL (a fresh database each)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.store.jobs import JobStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty job store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[[], JobStore]]:
    """Opens a JobStore on ``store_url`` — one per worker, as separate workers would — and closes
    them all after the test."""
    opened: list[JobStore] = []

    def open_() -> JobStore:
        opened.append(JobStore.open(store_url))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()
