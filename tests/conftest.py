"""Fixtures shared by the whole suite: the services of the test stack (``pipeline/stack/``).

- ``postgres_cluster`` / ``postgres_url``: one throwaway PostgreSQL cluster per session.
- ``seaweedfs`` / ``seaweedfs_server`` (a ``weed mini`` process, credentials and digests checked),
  ``moto_s3`` (moto's threaded server: fast, checks no digest), ``s3_target`` (each in turn), all
  once per session; ``doomed_seaweedfs``: one of a test's own, for tests that kill it.
- ``sandbox_process``: start ``klingflow sandbox serve`` processes, stopped after the test (the
  in-process sandboxes are the render and provider tests' own fixtures).

Services start only when a test asks for them, and once per test process (``-n 2``: twice).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeline.stack import s3 as stack_s3

if TYPE_CHECKING:
    from pipeline.archive.archiver import S3Archive
    from pipeline.stack.postgres import PostgresCluster
    from pipeline.stack.sandbox import SandboxProcess
    from pipeline.storage.settings import S3Settings

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


# --- S3-compatible servers --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class S3Target(stack_s3.S3Endpoint):
    """An S3 endpoint of the stack, plus the project's own ways of talking to it."""

    @classmethod
    def of(cls, endpoint: stack_s3.S3Endpoint) -> S3Target:
        """The same endpoint, with the project-side helpers."""
        return cls(**dataclasses.asdict(endpoint))

    def settings(self, **overrides: Any) -> S3Settings:
        """Settings for this endpoint (small retries so failure tests stay fast)."""
        from pipeline.storage.settings import S3Settings

        values: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region": stack_s3.REGION,
            "max_attempts": 2,
            "connect_timeout": 2.0,
            "read_timeout": 20.0,
        }
        values.update(overrides)
        return S3Settings(**values)

    def client(self, **overrides: Any) -> Any:
        """A client from the project's factory."""
        from pipeline.storage.s3client import make_s3_client

        return make_s3_client(self.settings(**overrides), session=self.session())

    def archive(self, prefix: str | None = None, **overrides: Any) -> S3Archive:
        """An S3Archive under a fresh prefix of the test bucket."""
        from pipeline.archive.archiver import S3Archive
        from pipeline.archive.location import S3Location
        from pipeline.storage.s3client import make_s3_client

        settings = self.settings(**overrides)
        location = S3Location(self.bucket, prefix or f"t-{uuid.uuid4().hex[:12]}")
        return S3Archive(make_s3_client(settings, session=self.session()), location, settings)


@dataclasses.dataclass
class SeaweedServer(stack_s3.SeaweedServer):
    """A ``weed mini`` process whose target has the project-side helpers."""

    target: S3Target


def start_seaweedfs(workdir: Path) -> SeaweedServer:
    """``weed mini`` in ``workdir`` (see :func:`pipeline.stack.s3.start_seaweedfs`)."""
    server = stack_s3.start_seaweedfs(workdir)
    return SeaweedServer(server.process, S3Target.of(server.target), server.log_path)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS for the session."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs(seaweedfs_server: SeaweedServer) -> S3Target:
    """The session's SeaweedFS as an S3 target."""
    return seaweedfs_server.target


@pytest.fixture
def doomed_seaweedfs(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this test's own, for tests that kill it."""
    server = start_seaweedfs(tmp_path / "doomed")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Target]:
    """moto's threaded server on a free loopback port, with the test bucket."""
    server = stack_s3.start_moto()
    yield S3Target.of(server.target)
    server.stop()


@pytest.fixture(params=["seaweedfs", "moto"])
def s3_target(request: pytest.FixtureRequest) -> S3Target:
    """Each S3-compatible server in turn."""
    name = "seaweedfs" if request.param == "seaweedfs" else "moto_s3"
    target: S3Target = request.getfixturevalue(name)
    return target


@pytest.fixture
def isolated_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, profiles or S3 settings leak in from the machine; no instance metadata.

    Not autouse here: the packages whose tests talk to S3 use it in an autouse fixture of theirs.
    """
    for name in list(os.environ):
        if name.startswith(("AWS_", "KLINGFLOW_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --- the sandbox as a process -------------------------------------------------------------------


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
    """Start ``klingflow sandbox serve`` processes: ``sandbox_process(**options)`` takes the options
    of :meth:`SandboxProcess.serve <pipeline.stack.sandbox.SandboxProcess.serve>` and returns the
    running process; every one is stopped after the test (its ledger belongs to this test)."""
    from pipeline.stack.sandbox import SandboxProcess

    started: list[SandboxProcess] = []

    def start(**options: Any) -> SandboxProcess:
        sandbox = SandboxProcess.serve(tmp_path / f"sandbox-{len(started)}", **options)
        started.append(sandbox)
        return sandbox.start()

    yield start
    for sandbox in started:
        sandbox.stop()
