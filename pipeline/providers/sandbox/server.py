"""Running the sandbox: in the foreground (``klingflow sandbox serve``) or in-process for tests.

Example::

    with run_sandbox(SandboxConfig(latency_scale=0.01)) as sandbox:
        settings = load_settings(base_url=sandbox.base_url)
        ...                                   # talk to sandbox.base_url over loopback HTTP
        assert all(e.charge_count <= 1 for e in sandbox.ledger())
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import uvicorn

from pipeline.errors import ConfigError
from pipeline.providers.sandbox.app import SandboxApp, create_app
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.ledger import LedgerEntry

STARTUP_TIMEOUT_S: Final = 20.0


def uvicorn_config(
    app: SandboxApp, host: str, port: int, *, log_level: str = "warning", own_logging: bool = False
) -> uvicorn.Config:
    """uvicorn settings shared by both ways of running.

    h11 because the cut-connection fault relies on its behaviour; no websockets; in-process,
    the host's logging configuration is left alone (``own_logging=False``).
    """
    extra: dict[str, object] = {} if own_logging else {"log_config": None}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        ws="none",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        **extra,  # type: ignore[arg-type]
    )


@dataclass
class SandboxHandle:
    """A running in-process sandbox."""

    base_url: str  # http://127.0.0.1:PORT/v1
    origin: str  # http://127.0.0.1:PORT (where /cdn files live)
    data_dir: Path
    app: SandboxApp

    def set_faults(self, faults: FaultConfig) -> None:
        """Change the injected fault rates of the running server (tests, benchmarks)."""
        self.app.state.faults = faults

    def ledger(self) -> list[LedgerEntry]:
        """Every accepted request, its cost and whether it was charged (read from the file)."""
        return self.app.state.ledger.entries()


@contextlib.contextmanager
def run_sandbox(
    config: SandboxConfig | None = None, *, data_dir: Path | None = None, host: str = "127.0.0.1"
) -> Iterator[SandboxHandle]:
    """Run a sandbox on ``host`` and a free port in a background thread; stop it on exit.

    ``data_dir`` holds renders, uploads and ``ledger.jsonl``; a temporary folder by default.
    """
    config = config or SandboxConfig()
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kf_sandbox_")))
        app = create_app(config, data_dir)
        server = uvicorn.Server(uvicorn_config(app, host, 0))
        thread = threading.Thread(target=server.run, name="kf-sandbox", daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise ConfigError(f"the sandbox server did not start on {host}")
            time.sleep(0.01)
        try:
            port = server.servers[0].sockets[0].getsockname()[1]
            origin = f"http://{host}:{port}"
            yield SandboxHandle(base_url=f"{origin}/v1", origin=origin, data_dir=data_dir, app=app)
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def serve(config: SandboxConfig, *, host: str, port: int, data_dir: Path) -> None:
    """Run the sandbox in the foreground until interrupted (Ctrl-C stops it cleanly)."""
    app = create_app(config, data_dir)
    uvicorn.Server(uvicorn_config(app, host, port, log_level="info", own_logging=True)).run()
