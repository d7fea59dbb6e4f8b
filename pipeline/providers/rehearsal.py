"""``--rehearse``: a script's real provider path, for free, against a realistic sandbox.

The rehearsal starts the sandbox in this process in its realistic mode — bearer token, strict
input schema, images only as ``https://`` URLs or data URIs, TLS, downloads from a CDN host
name — under host names of the provider's own kind (``*.rehearsal.runcomfy.net``), with a
certificate from a throwaway CA made for this rehearsal alone. Every request then goes through
exactly the code a real token uses: the same adapter, image transport, HTTPS and download
allow-list. Two things differ, and only in the rehearsal's own HTTP clients: they resolve those
names to the sandbox's loopback address (in httpcore's network backend, see
:mod:`pipeline.providers.transport`) and trust the throwaway CA instead of the system's.
Nothing a real run reads — no setting, no environment variable — can add either.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import SecretStr

#: The rehearsal's host names: under the provider's CDN domain, so the real allow-list applies.
API_HOST: Final = "model-api.rehearsal.runcomfy.net"
CDN_HOST: Final = "cdn.rehearsal.runcomfy.net"
LOOPBACK: Final = "127.0.0.1"


@dataclass(frozen=True)
class Rehearsal:
    """A running realistic sandbox and what the rehearsal's clients need to reach it."""

    base_url: str  # https://model-api.rehearsal.runcomfy.net:PORT/v1
    token: SecretStr
    hosts: dict[str, str]  # name → loopback address, for the rehearsal's clients only
    ssl_context: ssl.SSLContext  # trusts the throwaway CA only
    handle: object  # the SandboxHandle (its ledger and request log)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (the sandbox binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def rehearsal_sandbox(*, latency_scale: float, render_scale: float) -> Iterator[Rehearsal]:
    """Start the realistic sandbox over TLS on loopback; stop it and forget the CA on exit."""
    # Imported here: only a rehearsal needs the sandbox (FastAPI, uvicorn) and trustme.
    import trustme

    from pipeline.providers.sandbox.config import SandboxConfig
    from pipeline.providers.sandbox.server import run_sandbox

    ca = trustme.CA()
    cert = ca.issue_cert(API_HOST, CDN_HOST, LOOPBACK)
    token = SecretStr(secrets.token_urlsafe(24))
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    context.load_verify_locations(cadata=ca.cert_pem.bytes().decode("ascii"))
    with tempfile.TemporaryDirectory(prefix="kf_rehearsal_") as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        port = free_port()
        config = SandboxConfig(
            realistic=True,
            token=token,
            cdn_base_url=f"https://{CDN_HOST}:{port}",
            latency_scale=latency_scale,
            render_scale=render_scale,
        )
        with run_sandbox(config, port=port, tls=(cert_file, key_file)) as handle:
            yield Rehearsal(
                base_url=f"https://{API_HOST}:{port}/v1",
                token=token,
                hosts={API_HOST: LOOPBACK, CDN_HOST: LOOPBACK},
                ssl_context=context,
                handle=handle,
            )
