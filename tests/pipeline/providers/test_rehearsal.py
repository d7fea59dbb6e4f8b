"""The rehearsal's sandbox: TLS on loopback under the provider's kind of names, its own CA."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest

from pipeline.providers import transport
from pipeline.providers.rehearsal import API_HOST, CDN_HOST, LOOPBACK, free_port, rehearsal_sandbox
from pipeline.providers.sandbox.server import SandboxHandle

TIMEOUT = httpx.Timeout(10.0)
MODEL = "kling/kling-3.0/standard/text-to-video"


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, port))


def test_rehearsal_sandbox_answers_over_tls_through_the_mapped_names() -> None:
    with rehearsal_sandbox(latency_scale=0.005, render_scale=0.1) as rehearsal:
        assert rehearsal.base_url.startswith(f"https://{API_HOST}:")
        assert rehearsal.hosts == {API_HOST: LOOPBACK, CDN_HOST: LOOPBACK}
        assert isinstance(rehearsal.handle, SandboxHandle)
        config = rehearsal.handle.config
        assert config.realistic and config.token == rehearsal.token
        assert config.cdn_base_url is not None and config.cdn_base_url.startswith(f"https://{CDN_HOST}:")
        assert rehearsal.token.get_secret_value() not in repr(rehearsal)

        async def main() -> tuple[httpx.Response, httpx.Response]:
            client = transport.api_client(TIMEOUT, verify=rehearsal.ssl_context, hosts=rehearsal.hosts)
            async with client:
                url = f"{rehearsal.base_url}/models/{MODEL}"
                bearer = {"Authorization": f"Bearer {rehearsal.token.get_secret_value()}"}
                return await client.get(url, headers=bearer), await client.get(url)

        authorised, anonymous = asyncio.run(main())
        assert authorised.status_code == 200
        assert authorised.json()["model_id"] == MODEL
        assert anonymous.status_code == 401  # realistic: the token is required


def test_the_throwaway_ca_is_trusted_only_by_the_rehearsals_client() -> None:
    with rehearsal_sandbox(latency_scale=0.005, render_scale=0.1) as rehearsal:
        port = rehearsal.base_url.rsplit(":", 1)[1].split("/", 1)[0]

        async def main() -> None:
            # The system's trust (certifi) does not know the rehearsal's CA.
            client = transport.api_client(TIMEOUT, verify=ssl.create_default_context(), hosts=rehearsal.hosts)
            async with client:
                await client.get(f"https://{API_HOST}:{port}/v1/models/{MODEL}")

        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(main())
    # Leaving the context stops the server.
    with pytest.raises(ConnectionRefusedError), socket.create_connection((LOOPBACK, int(port)), timeout=5):
        pass
