"""A Prefect server and klingflow process workers as child processes, on loopback.

The server keeps its database where it is told (PostgreSQL in scale-out); each worker is
``klingflow worker`` in its own process group, so that stopping one — or killing it as a crash
would — takes its flow runs' processes with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pipeline.errors import StackError
from pipeline.processes import descendants
from pipeline.stack.children import console_script, stop_group, tail
from pipeline.stack.ports import free_port

#: Server settings for a rehearsal or test stack: no UI, no analytics (no network here), and a
#: scheduler that looks for due schedules every few seconds instead of every minute.
SERVER_ENV: Mapping[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "5",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


@dataclass
class PrefectServer:
    """``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME and database."""

    home: Path
    database_url: str
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        """PREFECT_API_URL of this server."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def log(self) -> Path:
        """The server's output."""
        return self.home / "server.log"

    def client_env(self) -> dict[str, str]:
        """Environment for processes that use this server (workers, the CLI)."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home / "client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def start(self, timeout: float = 180) -> PrefectServer:
        """Start the server and wait until its health endpoint answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = {
            **os.environ,
            **SERVER_ENV,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url,
            **self.env,
        }
        env.pop("PREFECT_API_URL", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    console_script("prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-ui",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(
                    f"the Prefect server exited with {self.proc.returncode}", log_tail=tail(self.log)
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise StackError(f"the Prefect server did not answer within {timeout:.0f} s", log_tail=tail(self.log))

    def stop(self) -> None:
        """Stop the server (safe to call twice)."""
        if self.proc is not None:
            stop_group(self.proc)

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Worker:
    """``klingflow worker --pool POOL`` in its own process group, with its own environment."""

    name: str
    pool: str
    env: dict[str, str]
    cwd: Path
    #: Flow runs at once on this worker (``--limit``); None: Prefect's default, no limit.
    limit: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """The worker's output (and its flow runs')."""
        return self.cwd / f"{self.name}.log"

    def start(self) -> Worker:
        """Start the worker; it polls the pool until stopped."""
        self.cwd.mkdir(parents=True, exist_ok=True)
        limit = [] if self.limit is None else ["--limit", str(self.limit)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [console_script("klingflow"), "worker", "--pool", self.pool, "--name", self.name, *limit],
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """Kill the worker and its flow runs at once, as a crash of its machine would.

        Prefect starts each flow run in a session of its own, so the worker's process group is
        not enough: every descendant is killed.
        """
        if self.proc is None:
            return
        doomed = descendants(self.proc.pid)
        stop_group(self.proc, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the worker and its flow runs (safe to call twice)."""
        if self.proc is None:
            return
        doomed = descendants(self.proc.pid)
        stop_group(self.proc)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def tail(self) -> str:
        """The end of the worker's log, for error messages."""
        return tail(self.log)
