"""The provider's HTTP clients: downloads checked by the address a name resolves to (issue 12 §9).

A CDN host name on the allow-list can still resolve anywhere (DNS rebinding, a hostile record):
the check happens in httpcore's network backend, where the resolved address is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from pipeline.errors import DownloadError
from pipeline.providers import transport
from pipeline.providers.transport import CheckedBackend, is_public_address

TIMEOUT = httpx.Timeout(5.0)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata: link-local
        ("fe80::1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to classify, nothing binds it
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT: not global
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.fixture
async def loopback_http() -> AsyncIterator[int]:
    """A minimal HTTP server on 127.0.0.1 answering 200 "ok" to anything."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    server.close()
    await server.wait_closed()


async def test_a_cdn_name_resolving_to_loopback_is_refused_at_connect(loopback_http: int) -> None:
    hosts = {"cdn.example.runcomfy.net": "127.0.0.1"}
    async with transport.download_client(TIMEOUT, allow_private=False, hosts=hosts) as client:
        with pytest.raises(DownloadError, match=r"resolves to 127\.0\.0\.1.*ALLOW_PRIVATE_NETWORK"):
            await client.get(f"http://cdn.example.runcomfy.net:{loopback_http}/v.mp4")


async def test_opting_in_allows_private_addresses(loopback_http: int) -> None:
    hosts = {"cdn.example.runcomfy.net": "127.0.0.1"}
    async with transport.download_client(TIMEOUT, allow_private=True, hosts=hosts) as client:
        response = await client.get(f"http://cdn.example.runcomfy.net:{loopback_http}/v.mp4")
    assert response.status_code == 200 and response.text == "ok"


async def test_names_are_resolved_by_the_system_and_checked(loopback_http: int) -> None:
    # "localhost" resolves (through the system resolver) to loopback: refused without opt-in.
    async with transport.download_client(TIMEOUT, allow_private=False) as client:
        with pytest.raises(DownloadError, match="resolves to"):
            await client.get(f"http://localhost:{loopback_http}/")


async def test_ip_literals_are_checked_too(loopback_http: int) -> None:
    backend = CheckedBackend(allow_private=False)
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1"):
        await backend.connect_tcp("127.0.0.1", loopback_http)


async def test_behind_a_proxy_the_default_transport_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy resolves and connects; checking its address would refuse every download.
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    assert transport.proxy_configured()
    async with transport.download_client(TIMEOUT, allow_private=False) as client:
        assert not isinstance(getattr(client._transport, "_pool", None), type(None))
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert not isinstance(getattr(pool, "_network_backend", None), CheckedBackend)


async def test_the_api_client_of_a_real_run_maps_no_names() -> None:
    async with transport.api_client(TIMEOUT) as client:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert not isinstance(getattr(pool, "_network_backend", None), CheckedBackend)
