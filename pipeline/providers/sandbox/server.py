"""Running the sandbox: in the foreground (``klingflow sandbox serve``) or in-process for tests.

Example::

    with run_sandbox(SandboxConfig(latency_scale=0.01)) as sandbox:
        settings = load_settings(base_url=sandbox.base_url)
        ...                                   # talk to sandbox.base_url over loopback HTTP
        assert all(e.charge_count <= 1 for e in sandbox.ledger())

    # Like the hosted API: token, strict schemas, data:/https images, HTTPS, CDN-style URLs.
    config = SandboxConfig(realistic=True, token=SecretStr("t"),
                           cdn_base_url="https://cdn-sandbox.runcomfy.net")
    with run_sandbox(config, tls=(cert_pem, key_pem)) as sandbox:
        ...                                   # https://127.0.0.1:PORT/v1; videos under the CDN
"""

from __future__ import annotations

import contextlib
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import uvicorn

from pipeline.errors import ConfigError
from pipeline.providers.sandbox.app import SandboxApp, create_app
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
from pipeline.providers.sandbox.ledger import LedgerEntry

STARTUP_TIMEOUT_S: Final = 20.0


#: A server certificate chain and its private key (PEM files).
TlsFiles = tuple[Path, Path]


def check_tls(tls: TlsFiles) -> None:
    """Refuse (ConfigError) a certificate/key pair that cannot be read or does not match."""
    cert, key = tls
    for label, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise ConfigError(f"{label} {path}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: not a usable PEM pair ({exc})") from exc


def uvicorn_config(
    app: SandboxApp,
    host: str,
    port: int,
    *,
    log_level: str = "warning",
    own_logging: bool = False,
    tls: TlsFiles | None = None,
) -> uvicorn.Config:
    """uvicorn settings shared by both ways of running.

    h11 because the cut-connection fault relies on its behaviour (it works the same over TLS:
    the wrapper sits above the protocol); no websockets; in-process, the host's logging
    configuration is left alone (``own_logging=False``).
    """
    extra: dict[str, Any] = {} if own_logging else {"log_config": None}
    if tls is not None:
        check_tls(tls)
        extra |= {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
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
        **extra,
    )


@dataclass
class SandboxHandle:
    """A running in-process sandbox."""

    base_url: str  # http(s)://127.0.0.1:PORT/v1
    origin: str  # http(s)://127.0.0.1:PORT (where /cdn files live)
    data_dir: Path
    app: SandboxApp
    port: int = 0

    @property
    def config(self) -> SandboxConfig:
        """The configuration the server runs with."""
        return self.app.state.config

    @property
    def cdn_base_url(self) -> str:
        """Where result videos point (``…/videos/{id}.mp4``) for a client that reached the API
        on this handle's port."""
        return self.config.video_base(self.origin, self.port)

    def requests(self) -> list[dict[str, Any]]:
        """The request log: one entry per submit (see :mod:`~pipeline.providers.sandbox.requestlog`)."""
        return self.app.state.requests.entries()

    def set_faults(self, faults: FaultConfig) -> None:
        """Change the injected fault rates of the running server (tests, benchmarks)."""
        self.app.state.faults = faults

    def ledger(self) -> list[LedgerEntry]:
        """Every accepted request, its cost and whether it was charged (read from the file)."""
        return self.app.state.ledger.entries()


@contextlib.contextmanager
def run_sandbox(
    config: SandboxConfig | None = None,
    *,
    data_dir: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TlsFiles | None = None,
) -> Iterator[SandboxHandle]:
    """Run a sandbox on ``host`` and ``port`` (0: a free one) in a background thread; stop it on exit.

    ``data_dir`` holds renders, uploads and ``ledger.jsonl``; a temporary folder by default.
    ``tls`` (certificate chain, key: PEM files) serves HTTPS instead of HTTP.
    """
    config = config or SandboxConfig()
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kf_sandbox_")))
        app = create_app(config, data_dir)
        server = uvicorn.Server(uvicorn_config(app, host, port, tls=tls))
        thread = threading.Thread(target=server.run, name="kf-sandbox", daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise ConfigError(f"the sandbox server did not start on {host}")
            time.sleep(0.01)
        try:
            bound = server.servers[0].sockets[0].getsockname()[1]
            origin = f"{'https' if tls else 'http'}://{host}:{bound}"
            yield SandboxHandle(
                base_url=f"{origin}/v1", origin=origin, data_dir=data_dir, app=app, port=bound
            )
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def serve(
    config: SandboxConfig, *, host: str, port: int, data_dir: Path, tls: TlsFiles | None = None
) -> None:
    """Run the sandbox in the foreground until interrupted (Ctrl-C stops it cleanly)."""
    if tls is not None:
        check_tls(tls)  # before anything starts: a clear ConfigError, not a server traceback
    app = create_app(config, data_dir)
    uvicorn.Server(uvicorn_config(app, host, port, log_level="info", own_logging=True, tls=tls)).run()
