"""What every HTTP provider adapter shares: its timeouts, retry budget and download checks.

A provider's settings class (fal's, for one) derives from :class:`HttpKnobs` and adds its own
key and URLs; :func:`retrying` runs a call under stamina with those knobs, and
:func:`download_policy` builds the CDN allow-list and size checks from them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import ClassVar, TypeVar

import httpx
import stamina
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from pipeline.providers import retry
from pipeline.providers.download import DownloadPolicy
from pipeline.providers.settings import MAX_DOWNLOAD_BYTES

T = TypeVar("T")


class SecretAuth(httpx.Auth):
    """``Authorization: <scheme> <secret>`` added per API request (never a client-wide header,
    which would reach the CDN); the secret stays a SecretStr and never shows in a repr."""

    scheme: ClassVar[str]

    def __init__(self, secret: SecretStr | None) -> None:
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the header (when a secret is configured) and send the request."""
        if self._secret is not None:
            request.headers["Authorization"] = f"{self.scheme} {self._secret.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        shown = "'**********'" if self._secret is not None else "None"
        return f"{type(self).__name__}(secret={shown})"


class HttpKnobs(BaseSettings):
    """Timeouts, retry budget and download limits (a base: subclasses set their env prefix)."""

    # One line each (the wording is the README's table row).
    connect_timeout_s: float = Field(default=10.0, gt=0, description="seconds to connect")
    read_timeout_s: float = Field(default=30.0, gt=0, description="seconds to wait for an API answer")
    download_read_timeout_s: float = Field(
        default=60.0, gt=0, description="seconds to wait for download bytes"
    )
    max_attempts: int = Field(default=retry.DEFAULT_MAX_ATTEMPTS, ge=1, description="tries of a free call")
    max_total_s: float = Field(
        default=retry.DEFAULT_MAX_TOTAL_S, gt=0, description="seconds all tries may take"
    )
    max_download_bytes: int = Field(
        default=MAX_DOWNLOAD_BYTES, gt=0, description="largest clip downloaded (bytes)"
    )
    duration_tolerance_s: float = Field(default=0.25, ge=0, description="clip duration tolerance (s)")

    def api_timeout(self) -> httpx.Timeout:
        """The timeout of one API call."""
        return httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)


def download_policy(
    knobs: HttpKnobs, domains: tuple[str, ...], origins: tuple[str, ...] = ()
) -> DownloadPolicy:
    """Downloads from ``domains`` (and the exact ``origins``) within ``knobs``' limits."""
    return DownloadPolicy(
        domains=domains,
        origins=origins,
        max_bytes=knobs.max_download_bytes,
        duration_tolerance_s=knobs.duration_tolerance_s,
        timeout=httpx.Timeout(knobs.download_read_timeout_s, connect=knobs.connect_timeout_s),
    )


async def retrying(
    knobs: HttpKnobs, hook: Callable[[Exception], bool | float], call: Callable[[], Awaitable[T]]
) -> T:
    """``call()``, retried while ``hook`` says so, within ``knobs``' attempts and total time."""
    async for attempt in stamina.retry_context(
        on=hook,
        attempts=knobs.max_attempts,
        timeout=knobs.max_total_s,
        wait_initial=retry.INITIAL_DELAY_S,
        wait_max=retry.MAX_DELAY_S,
        wait_jitter=retry.JITTER_S,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover
