"""A throwaway PostgreSQL cluster on loopback: the shared job store of a local scale-out stack.

Example::

    with PostgresCluster(Path("/tmp/klingflow-pg")) as pg:
        pg.create_database("jobs")
        store = JobStore.open(pg.url("jobs"))  # postgresql+psycopg://postgres@127.0.0.1:PORT/jobs

It runs the server binaries of Debian's ``postgresql`` package (the newest
``/usr/lib/postgresql/<version>/bin``, else ``initdb`` on PATH). A new data directory gets a new
cluster (UTF8, locale C); an existing cluster in it is started as it is, and is left on disk by
``stop()`` for the caller to remove.

Security: the cluster trusts every connection (``initdb --auth=trust``, no password). That is
acceptable only because it listens on 127.0.0.1 and on a unix socket inside its 0700 data
directory, never on another address: any process of *this* machine may connect as the superuser
``postgres``, nothing elsewhere can. Use it for rehearsals, tests and benchmarks, never for a
store that outlives them.

initdb and postgres refuse to run as root. As root, they run as the ``postgres`` OS user (which
the Debian package creates) through ``runuser``; that user then owns the data directory and must
be able to reach it: every parent must be searchable by it (``/tmp/name`` is; pytest's
``/tmp/pytest-of-root/...`` is not).
"""

from __future__ import annotations

import math
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from pipeline.errors import ConfigError, StackError
from pipeline.stack.ports import HOST, free_port

#: Where Debian's ``postgresql-<version>`` packages put the server binaries.
DEBIAN_LIB_DIR = Path("/usr/lib/postgresql")
#: The OS user the server runs as when we are root, and the cluster's superuser (always).
POSTGRES_USER = "postgres"
DEFAULT_TIMEOUT = 60.0
#: Server settings unless the caller overrides them. A Prefect server's pool and several workers'
#: pools (SQLAlchemy: 5 + 10 overflow each) connect at once.
DEFAULT_SETTINGS: Mapping[str, str | int] = {"max_connections": 200}
#: A free port is picked by binding port 0 and then handed to postgres: another process may take
#: it in between, so an automatic port is tried this many times.
PORT_ATTEMPTS = 3
#: The file of per-start settings, included from postgresql.conf.
SETTINGS_FILE = "klingflow.conf"

Driver = Literal["psycopg", "asyncpg"]

_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def newest_bin_dir(lib_dir: Path = DEBIAN_LIB_DIR) -> Path | None:
    """The ``bin`` directory of the newest PostgreSQL version installed under ``lib_dir``."""
    found = [d for d in lib_dir.glob("*/bin") if _has_server_binaries(d)]
    return max(found, key=lambda d: _version_key(d.parent.name), default=None)


def find_bin_dir(bin_dir: Path | None = None) -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: ``bin_dir`` if given, else Debian's newest,
    else the one on PATH. Raises ConfigError naming the package to install."""
    if bin_dir is None:
        bin_dir = newest_bin_dir()
        if bin_dir is None and (on_path := shutil.which("initdb")):
            bin_dir = Path(on_path).parent
        where = f"{DEBIAN_LIB_DIR}/<version>/bin or on PATH"
    else:
        where = str(bin_dir)
    if bin_dir is None or not _has_server_binaries(bin_dir):
        raise ConfigError(
            f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {where}; "
            "install them with `apt-get install postgresql`"
        )
    return bin_dir


class PostgresCluster:
    """A PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1 only, started and stopped here.

    ``port`` is picked free when not given; ``settings`` override postgresql.conf entries (the
    address, port and socket directory are fixed). ``timeout`` bounds every wait, in seconds.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str | int] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.bin_dir = find_bin_dir(bin_dir)
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.timeout = timeout
        self._wanted_port = port
        self._port: int | None = None
        self._owner = _server_owner()

    def __repr__(self) -> str:
        return f"PostgresCluster({str(self.data_dir)!r}, port={self._port})"

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def log_file(self) -> Path:
        """The server's log (appended to by every start)."""
        return self.data_dir / "server.log"

    @property
    def running(self) -> bool:
        """Whether this object started the server and has not stopped it."""
        return self._port is not None

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None:
            raise StackError(f"{self!r} is not running: start() it first")
        return self._port

    def url(self, database: str = "postgres", driver: Driver = "psycopg") -> str:
        """The SQLAlchemy URL of ``database``: psycopg for the job store, asyncpg for Prefect's own."""
        _check_database_name(database)
        return f"postgresql+{driver}://{POSTGRES_USER}@{HOST}:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        """Create the cluster if the data directory has none, start it and wait until it is ready."""
        if self._port is not None:
            return self
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        attempts_left = 1 if self._wanted_port is not None else PORT_ATTEMPTS
        while True:
            port = self._wanted_port or free_port()
            self._write_settings(port)
            log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
            done = self._pg_ctl("start", "-l", str(self.log_file), "-w", "-t", str(math.ceil(self.timeout)))
            if done.returncode == 0:
                self._port = port
                return self
            self._pg_ctl("stop", "-m", "immediate")  # in case it came up after pg_ctl gave up
            log_tail = _tail(self._read_log(log_start))
            attempts_left -= 1
            if attempts_left and "Address already in use" in log_tail:
                continue  # someone took the free port first: pick another
            raise StackError(
                f"PostgreSQL in {self.data_dir} did not start on {HOST}:{port} within {self.timeout:g} s "
                f"({_tail(done.stdout + done.stderr, 3)}); the end of {self.log_file}:",
                log_tail=log_tail,
            )

    def stop(self) -> None:
        """Stop the server fast (open sessions are rolled back); safe to call when stopped."""
        self._port = None
        if not (self.data_dir / "postmaster.pid").exists():
            return
        done = self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(math.ceil(self.timeout)))
        if done.returncode != 0 and self._pg_ctl("status").returncode != 3:  # 3: not running
            raise StackError(
                f"PostgreSQL in {self.data_dir} did not stop", log_tail=_tail(done.stdout + done.stderr)
            )

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its psycopg URL."""
        _check_database_name(name)
        try:
            with psycopg.connect(
                f"postgresql://{POSTGRES_USER}@{HOST}:{self.port}/postgres",
                autocommit=True,
                connect_timeout=math.ceil(self.timeout),
            ) as conn:
                found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                if found is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            pass  # created by someone else between our look and our CREATE
        except psycopg.Error as exc:
            raise StackError(f"could not create database {name!r} in {self!r}: {exc}") from exc
        return self.url(name)

    # --- the edge: directories and server programs ----------------------------------------------

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise ConfigError(f"{self.data_dir} is neither empty nor a PostgreSQL cluster")
        self.data_dir.chmod(0o700)
        self._give(self.data_dir)
        if self._owner is not None and self._as_owner(["test", "-w", str(self.data_dir)]).returncode != 0:
            raise ConfigError(
                f"the {POSTGRES_USER!r} OS user cannot write {self.data_dir}: a parent directory is not "
                "searchable by it; put the cluster in a directory such as /tmp/<name>"
            )
        done = self._as_owner(
            [
                str(self.bin_dir / "initdb"),
                f"--pgdata={self.data_dir}",
                f"--username={POSTGRES_USER}",
                "--auth=trust",  # loopback and a private socket only: see the module docstring
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # a throwaway cluster: not worth seconds of fsync at creation
                "--no-instructions",
            ]
        )
        if done.returncode != 0:
            raise StackError(f"initdb failed in {self.data_dir}", log_tail=_tail(done.stdout + done.stderr))
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"\n# klingflow: loopback only, settings rewritten at every start\ninclude '{SETTINGS_FILE}'\n"
            )

    def _write_settings(self, port: int) -> None:
        values: dict[str, str | int] = {
            **self.settings,
            "listen_addresses": HOST,
            "port": port,
            "unix_socket_directories": str(self.data_dir),
        }
        lines = [f"{name} = {_conf_value(value)}" for name, value in values.items()]
        path = self.data_dir / SETTINGS_FILE
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._give(path)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._as_owner([str(self.bin_dir / "pg_ctl"), *args, f"--pgdata={self.data_dir}"])

    def _as_owner(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server program as the cluster's OS user, from "/" (which that user can reach)."""
        prefix = ["runuser", "-u", POSTGRES_USER, "--"] if self._owner is not None else []
        # PG* variables (PGDATA, PGPORT, ...) would override what we pass.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            return subprocess.run(
                [*prefix, *argv],
                capture_output=True,
                text=True,
                cwd="/",
                env=env,
                timeout=self.timeout + 10,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{argv[0]} did not finish within {self.timeout + 10:g} s") from exc
        except FileNotFoundError as exc:
            raise ConfigError(f"cannot run {exc.filename}: {exc.strerror}") from exc

    def _give(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _read_log(self, start: int = 0) -> str:
        """The server log from byte ``start`` on (what one start wrote)."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(start)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def _server_owner() -> pwd.struct_passwd | None:
    """The OS user to run the server as: None for ourselves, the ``postgres`` user when root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        raise ConfigError(
            f"running as root, PostgreSQL must run as the {POSTGRES_USER!r} OS user, which does not "
            "exist; `apt-get install postgresql` creates it"
        ) from None


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(name: str) -> tuple[int, ...]:
    """``"9.6"`` → (9, 6), ``"15"`` → (15,); anything else sorts first."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return ()


def _check_database_name(name: str) -> None:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r} must be lowercase letters, digits and '_' (≤ 63)")


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
