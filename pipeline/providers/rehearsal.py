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
    with _realistic_sandbox(API_HOST, CDN_HOST, latency_scale, render_scale, {}) as (port, started):
        token, context, handle = started
        yield Rehearsal(
            base_url=f"https://{API_HOST}:{port}/v1",
            token=token,
            hosts={API_HOST: LOOPBACK, CDN_HOST: LOOPBACK},
            ssl_context=context,
            handle=handle,
        )


@contextlib.contextmanager
def _realistic_sandbox(
    api_host: str, cdn_host: str, latency_scale: float, render_scale: float, extra: dict[str, object]
) -> Iterator[tuple[int, tuple[SecretStr, ssl.SSLContext, object]]]:
    """The realistic sandbox over TLS under ``api_host``/``cdn_host`` (``extra``: more config)."""
    # Imported here: only a rehearsal needs the sandbox (FastAPI, uvicorn) and trustme.
    import trustme

    from pipeline.providers.sandbox.config import SandboxConfig
    from pipeline.providers.sandbox.server import run_sandbox

    ca = trustme.CA()
    cert = ca.issue_cert(api_host, cdn_host, LOOPBACK)
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
            cdn_base_url=f"https://{cdn_host}:{port}",
            latency_scale=latency_scale,
            render_scale=render_scale,
            **extra,
        )
        with run_sandbox(config, port=port, tls=(cert_file, key_file)) as handle:
            yield port, (token, context, handle)


# --- Kling's own API ---------------------------------------------------------------------------

#: Kling's rehearsal names: under klingai.com, the Kling adapter's CDN allow-list domain.
KLING_API_HOST: Final = "api.rehearsal.klingai.com"
KLING_CDN_HOST: Final = "cdn.rehearsal.klingai.com"


@dataclass(frozen=True)
class KlingRehearsal:
    """A realistic sandbox speaking Kling's API, and the throwaway key pair it verifies JWTs with."""

    base_url: str  # https://api.rehearsal.klingai.com:PORT
    access_key: SecretStr
    secret_key: SecretStr
    hosts: dict[str, str]
    ssl_context: ssl.SSLContext
    handle: object


@contextlib.contextmanager
def kling_rehearsal_sandbox(*, latency_scale: float, render_scale: float) -> Iterator[KlingRehearsal]:
    """As :func:`rehearsal_sandbox`, for the Kling adapter (its own host names and key pair)."""
    access, secret = SecretStr(secrets.token_hex(16)), SecretStr(secrets.token_urlsafe(32))
    extra: dict[str, object] = {"kling_access_key": access.get_secret_value(), "kling_secret_key": secret}
    with _realistic_sandbox(KLING_API_HOST, KLING_CDN_HOST, latency_scale, render_scale, extra) as (
        port,
        started,
    ):
        _token, context, handle = started
        yield KlingRehearsal(
            base_url=f"https://{KLING_API_HOST}:{port}",
            access_key=access,
            secret_key=secret,
            hosts={KLING_API_HOST: LOOPBACK, KLING_CDN_HOST: LOOPBACK},
            ssl_context=context,
            handle=handle,
        )


# --- fal.ai ------------------------------------------------------------------------------------

#: fal's rehearsal names: the queue under fal.run, results under fal.media (the fal adapter's
#: CDN allow-list domain), as fal serves them (``queue.fal.run``, ``v3.fal.media/files/…``).
FAL_QUEUE_HOST: Final = "queue.rehearsal.fal.run"
FAL_CDN_HOST: Final = "v3.rehearsal.fal.media"


@dataclass(frozen=True)
class FalRehearsal:
    """A realistic sandbox speaking fal's queue API, and the throwaway key it checks."""

    queue_url: str  # https://queue.rehearsal.fal.run:PORT
    key: SecretStr
    hosts: dict[str, str]
    ssl_context: ssl.SSLContext
    handle: object


@contextlib.contextmanager
def fal_rehearsal_sandbox(*, latency_scale: float, render_scale: float) -> Iterator[FalRehearsal]:
    """As :func:`rehearsal_sandbox`, for the fal adapter (its own host names; videos under
    ``https://v3.rehearsal.fal.media:PORT/files/videos/…``)."""
    with _realistic_sandbox(FAL_QUEUE_HOST, FAL_CDN_HOST, latency_scale, render_scale, {}) as (port, started):
        key, context, handle = started
        yield FalRehearsal(
            queue_url=f"https://{FAL_QUEUE_HOST}:{port}",
            key=key,
            hosts={FAL_QUEUE_HOST: LOOPBACK, FAL_CDN_HOST: LOOPBACK},
            ssl_context=context,
            handle=handle,
        )
