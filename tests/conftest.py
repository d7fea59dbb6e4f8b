"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pipeline.stack.postgres import PostgresCluster

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


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (about 2 s to create and start).

    Tests share it but not its databases: take a fresh one from ``postgres_url``, or call
    ``postgres_cluster.create_database(name)``. It lives in a directory of its own under the system
    temp dir, not under pytest's: as root the server runs as the ``postgres`` OS user, which cannot
    enter pytest's private ``/tmp/pytest-of-root``. No fsync: the cluster is deleted after the
    session, and fsync made stopping it (a checkpoint of every test's database) take seconds.
    """
    from pipeline.stack.postgres import PostgresCluster

    data_dir = Path(tempfile.mkdtemp(prefix="klingflow-tests-pg-"))
    try:
        with PostgresCluster(data_dir, settings={"fsync": "off"}) as cluster:
            yield cluster
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The psycopg URL of a fresh, empty database in the session's PostgreSQL cluster."""
    return postgres_cluster.create_database(f"test_{uuid.uuid4().hex[:16]}")
