"""The throwaway PostgreSQL cluster: found, created, reachable on loopback only, stopped cleanly."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pipeline.errors import ConfigError, StackError
from pipeline.stack.postgres import PostgresCluster, find_bin_dir, newest_bin_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """An empty directory the ``postgres`` OS user can reach too (pytest's tmp_path is root's own)."""
    path = Path(tempfile.mkdtemp(prefix="klingflow-test-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fake_bin(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True)
    for name in names:
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    return directory


def test_the_cluster_serves_sqlalchemy_on_loopback_only(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.url()
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_cluster.port}/postgres"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            settings = {
                name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in (
                    "listen_addresses",
                    "unix_socket_directories",
                    "server_encoding",
                    "max_connections",
                )
            }
    finally:
        engine.dispose()
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(postgres_cluster.data_dir),
        "server_encoding": "UTF8",
        "max_connections": "200",
    }


def test_create_database_is_idempotent(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.create_database("idempotent")
    assert postgres_cluster.create_database("idempotent") == url == postgres_cluster.url("idempotent")
    with psycopg.connect(postgres_cluster.url().replace("+psycopg", "")) as conn:
        count = conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'idempotent'").fetchone()
    assert count == (1,)


def test_the_asyncpg_url_is_prefects_database_url(postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.create_database("prefect")
    url = postgres_cluster.url("prefect", driver="asyncpg")
    assert url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")

    async def current_database() -> str:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return str((await conn.execute(sa.text("SELECT current_database()"))).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(current_database()) == "prefect"


@pytest.mark.parametrize("name", ["", "Jobs", "a-b", "x;drop", "n" * 64])
def test_database_names_are_plain_identifiers(postgres_cluster: PostgresCluster, name: str) -> None:
    with pytest.raises(ValueError, match="lowercase letters, digits and '_'"):
        postgres_cluster.create_database(name)


def test_missing_binaries_are_a_config_error_naming_the_package(tmp_path: Path) -> None:
    empty = fake_bin(tmp_path / "bin")
    with pytest.raises(
        ConfigError,
        match=r"initdb, pg_ctl, postgres\) not found in .*/bin; install them with `apt-get install postgresql`",
    ):
        PostgresCluster(tmp_path / "data", bin_dir=empty)
    assert newest_bin_dir(tmp_path) is None


def test_the_newest_installed_version_is_used(tmp_path: Path) -> None:
    for version in ("9.6", "15", "11"):
        fake_bin(tmp_path / version / "bin", "initdb", "pg_ctl", "postgres")
    fake_bin(tmp_path / "16" / "bin", "pg_ctl")  # a client-only install: no server
    assert newest_bin_dir(tmp_path) == tmp_path / "15" / "bin"
    assert find_bin_dir(tmp_path / "11" / "bin") == tmp_path / "11" / "bin"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to the postgres OS user")
def test_a_directory_the_postgres_user_cannot_reach_is_a_config_error(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=r"'postgres' OS user cannot write .* /tmp/<name>"):
        PostgresCluster(private / "data").start()


def busy_port() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


@pytest.mark.slow
def test_start_stop_restart_and_a_clear_error_when_it_cannot_start(data_dir: Path) -> None:
    fast = {"fsync": "off"}
    with PostgresCluster(data_dir, settings=fast) as pg:
        url = pg.create_database("kept")
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            conn.execute("CREATE TABLE t (v int)")
            conn.execute("INSERT INTO t VALUES (42)")
        old_port = pg.port
    assert not pg.running
    pg.stop()  # stopping twice is fine
    with pytest.raises(StackError, match="is not running"):
        pg.url()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{old_port}/kept", connect_timeout=5)

    with busy_port() as taken:
        blocked = PostgresCluster(data_dir, port=taken.getsockname()[1], settings=fast)
        with pytest.raises(StackError, match="did not start") as failure:
            blocked.start()
    assert "Address already in use" in failure.value.log_tail
    assert not blocked.running

    with (
        PostgresCluster(data_dir, settings=fast) as again,
        psycopg.connect(again.url("kept").replace("+psycopg", "")) as conn,
    ):
        assert conn.execute("SELECT v FROM t").fetchone() == (42,)  # the cluster stayed on disk
