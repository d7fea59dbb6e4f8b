"""The HTTP clients that talk to a provider: the API client and the CDN download client.

Two clients, as RunComfy's own partner nodes keep them apart ("deliberately do not reuse the
authenticated API client for hosted files", ``runcomfy/media.py``): the bearer token can never
travel to a download host, and downloads get a check the API does not need —

- **by address, at connect time.** A CDN name that resolves to a loopback, private,
  link-local, multicast or otherwise reserved address is refused when the connection is made
  (a name on the allow-list can still point anywhere: DNS decides, not the URL), unless the
  user opts in with ``KLINGFLOW_PROVIDER_ALLOW_PRIVATE_NETWORK=1`` (an on-premise proxy, a
  realistic sandbox on this machine). The check lives in httpcore's *network backend*, the one
  place that sees the resolved address: the connection is then made to the checked address,
  while TLS still verifies the certificate against the host name.
- **names mapped inside one client.** A rehearsal (``klingflow run --rehearse``) runs a
  realistic sandbox on loopback under the provider's own kind of host names; only the
  rehearsal's client maps those names to its address and trusts its throwaway CA. A real run's
  client has no mapping: there is no setting that adds one.

TLS trust is httpx's own: certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` from the environment,
so a company CA works as users expect.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import typing
from collections.abc import Iterable, Mapping
from typing import Final

import anyio
import httpcore
import httpx

from pipeline.errors import DownloadError, TransportError

#: Environment variables that route HTTPS through a proxy: the proxy then resolves and connects,
#: so an address check here would check the proxy, not the CDN (see :func:`download_client`).
PROXY_VARIABLES: Final = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")

SocketOption = typing.Union[  # noqa: UP007 - the shape httpcore declares
    tuple[int, int, int], tuple[int, int, typing.Union[bytes, bytearray]], tuple[int, int, None, int]  # noqa: UP007
]


def is_public_address(address: str) -> bool:
    """True for a global unicast address; False for loopback, private, link-local, multicast,
    reserved or unspecified ones (and for IPv4-mapped IPv6 forms of those)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that resolves each host itself, checks the addresses, and connects.

    ``hosts`` maps names to fixed addresses (the rehearsal's sandbox); other names are resolved
    with the system resolver. Unless ``allow_private``, every non-public address is refused with
    a :class:`~pipeline.errors.DownloadError` naming the host and the address.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        hosts: Mapping[str, str] | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.hosts = {k.lower().rstrip("."): v for k, v in (hosts or {}).items()}
        self._inner = inner or httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` stands for (a literal is its own address), checked."""
        name = host.lower().rstrip(".")
        if name in self.hosts:
            addresses = [self.hosts[name]]
        else:
            try:
                ipaddress.ip_address(name.split("%", 1)[0])
                addresses = [name]
            except ValueError:
                try:
                    infos = await anyio.getaddrinfo(name, port, type=socket.SOCK_STREAM)
                except OSError as exc:
                    raise TransportError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.allow_private:
            refused = [a for a in addresses if not is_public_address(a)]
            if refused:
                raise DownloadError(
                    f"refusing to download from {host}: it resolves to {', '.join(refused)}, a "
                    "loopback/private/link-local/multicast address (set "
                    "KLINGFLOW_PROVIDER_ALLOW_PRIVATE_NETWORK=1 to allow it, e.g. for an "
                    "on-premise proxy)"
                )
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first checked address of ``host`` that answers."""
        last: Exception | None = None
        for address in await self.resolve(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # resolve() never returns an empty list
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - klingflow never uses unix sockets
        """Refused: provider traffic goes over TCP only."""
        raise DownloadError("unix sockets are not used for provider traffic")

    async def sleep(self, seconds: float) -> None:
        """Delegate to the inner backend."""
        await self._inner.sleep(seconds)


def _transport(
    verify: ssl.SSLContext | bool, backend: httpcore.AsyncNetworkBackend
) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(verify=verify, trust_env=True)
    # httpx 0.28 takes no network backend (httpcore does): rebuild the pool it made with the same
    # TLS context and default limits, plus the backend. httpx is pinned below 0.29.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=True),
        max_connections=httpx._config.DEFAULT_LIMITS.max_connections,
        max_keepalive_connections=httpx._config.DEFAULT_LIMITS.max_keepalive_connections,
        keepalive_expiry=httpx._config.DEFAULT_LIMITS.keepalive_expiry,
        network_backend=backend,
    )
    return transport


def proxy_configured() -> bool:
    """Whether HTTPS traffic goes through a proxy set in the environment."""
    return any(os.environ.get(name) for name in PROXY_VARIABLES)


def api_client(
    timeout: httpx.Timeout, *, verify: ssl.SSLContext | None = None, hosts: Mapping[str, str] | None = None
) -> httpx.AsyncClient:
    """The provider API's client: httpx's own trust, no redirects; ``hosts``/``verify`` only for
    a rehearsal (its sandbox's names and CA)."""
    if hosts is None and verify is None:
        return httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    backend = CheckedBackend(allow_private=True, hosts=hosts)
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, transport=_transport(verify or True, backend)
    )


def download_client(
    timeout: httpx.Timeout,
    *,
    allow_private: bool,
    verify: ssl.SSLContext | None = None,
    hosts: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """The CDN download client: every connection checked by address (see the module docstring).

    Behind an HTTPS proxy from the environment the proxy resolves and connects, so httpx's
    default transport is kept and the host-name allow-list is the check that remains.
    """
    if proxy_configured() and hosts is None:
        return httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    backend = CheckedBackend(allow_private=allow_private, hosts=hosts)
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, transport=_transport(verify or True, backend)
    )
