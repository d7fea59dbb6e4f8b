"""The one place that picks the provider: RunComfy when a token is configured, else the sandbox.

Example::

    async with open_provider(None, load_settings()) as opened:
        url = await opened.image_url("assets/deck.png")   # sandbox: uploaded to it
        report = await run_job(opened.provider, spec, Path("out/clip.mp4"))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import anyio
import httpx

from pipeline.errors import AuthError, ConfigError, InputNotFound, ProviderError
from pipeline.providers.runcomfy import RunComfyProvider, error_from_response, translate_httpx_error
from pipeline.providers.settings import ProviderSettings

#: The sandbox-only upload path, relative to the API base URL.
UPLOAD_PATH = "/sandbox/uploads"


class ProviderName(StrEnum):
    """The providers klingflow can buy generations from."""

    RUNCOMFY = "runcomfy"
    SANDBOX = "sandbox"


def choose_provider(requested: str | None, settings: ProviderSettings) -> ProviderName:
    """The provider to use: the requested one, else RunComfy with a token and the sandbox without.

    Asking for RunComfy without a token is an AuthError (exit 77), not a silent fallback.
    """
    if requested is None:
        return ProviderName.RUNCOMFY if settings.has_token else ProviderName.SANDBOX
    try:
        name = ProviderName(requested)
    except ValueError:
        raise ConfigError(f"unknown provider {requested!r}: use runcomfy or sandbox") from None
    if name is ProviderName.RUNCOMFY and not settings.has_token:
        raise AuthError(
            "no RunComfy token: set RUNCOMFY_TOKEN or write ~/.config/runcomfy/token.json, "
            "or use --provider sandbox"
        )
    return name


@dataclass
class OpenedProvider:
    """A provider ready to use, plus what only the sandbox can do (uploads, ledger)."""

    name: ProviderName
    provider: RunComfyProvider
    sandbox_base_url: str | None = None
    _client: httpx.AsyncClient = field(default_factory=httpx.AsyncClient, repr=False)

    async def image_url(self, path_or_url: str) -> str:
        """A URL the provider can fetch for a start/end image given as a local path or a URL.

        The sandbox takes uploads; RunComfy needs a public HTTPS URL (upload it elsewhere first).
        """
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        path = Path(path_or_url)
        if not await anyio.Path(path).is_file():
            raise InputNotFound(f"{path}: no such image")
        if self.sandbox_base_url is None:
            raise ConfigError(
                f"{path}: RunComfy only fetches public HTTPS URLs; upload the image (e.g. an S3 "
                "presigned GET URL) and pass the URL"
            )
        return await upload_to_sandbox(self._client, self.sandbox_base_url, path)


async def upload_to_sandbox(client: httpx.AsyncClient, base_url: str, path: Path) -> str:
    """Upload a local PNG/JPEG to the sandbox (``POST /v1/sandbox/uploads``); return its URL."""
    data = await anyio.Path(path).read_bytes()
    try:
        response = await client.post(f"{base_url.rstrip('/')}{UPLOAD_PATH}", content=data)
    except httpx.HTTPError as exc:
        raise translate_httpx_error(exc, operation=f"upload {path.name}") from exc
    error = error_from_response(response, operation=f"upload {path.name}")
    if error is not None:
        raise error
    url = response.json().get("url")
    if not isinstance(url, str):
        raise ProviderError(f"upload {path.name}: the sandbox gave no URL")
    return url


@contextlib.asynccontextmanager
async def open_provider(
    requested: str | None,
    settings: ProviderSettings,
    *,
    sandbox_config: object | None = None,
    http_client: httpx.AsyncClient | None = None,
    sandbox_url: str | None = None,
) -> AsyncIterator[OpenedProvider]:
    """Open the chosen provider; for the sandbox, start one in-process on loopback first —
    or use the one already serving at ``sandbox_url`` (``klingflow sandbox serve``), whose
    requests outlive this process (what resuming after a crash needs).

    ``sandbox_config`` is a :class:`~pipeline.providers.sandbox.config.SandboxConfig` (typed
    loosely so that importing this module does not import FastAPI).
    """
    name = choose_provider(requested, settings)
    async with contextlib.AsyncExitStack() as stack:
        client = (
            http_client if http_client is not None else await stack.enter_async_context(httpx.AsyncClient())
        )
        if name is ProviderName.RUNCOMFY:
            provider = RunComfyProvider(settings, http_client=client)
            yield OpenedProvider(name=name, provider=provider, _client=client)
            return
        if sandbox_url is not None:
            base = sandbox_url.rstrip("/")
            origin = "/".join(base.split("/", 3)[:3])
            external = settings.model_copy(update={"base_url": base, "token": None})
            provider = RunComfyProvider(
                external, http_client=client, download_origins=(origin,), name="sandbox"
            )
            yield OpenedProvider(name=name, provider=provider, sandbox_base_url=base, _client=client)
            return
        # Imported here: the sandbox brings FastAPI and uvicorn, which RunComfy users never need.
        from pipeline.providers.sandbox.config import SandboxConfig
        from pipeline.providers.sandbox.server import run_sandbox

        config = sandbox_config if isinstance(sandbox_config, SandboxConfig) else SandboxConfig()
        # Starting the server blocks briefly; keep the event loop free meanwhile.
        cm = run_sandbox(config)
        sandbox = await asyncio.to_thread(cm.__enter__)
        stack.push_async_callback(asyncio.to_thread, cm.__exit__, None, None, None)
        sandbox_settings = settings.model_copy(update={"base_url": sandbox.base_url, "token": None})
        provider = RunComfyProvider(
            sandbox_settings, http_client=client, download_origins=(sandbox.origin,), name="sandbox"
        )
        yield OpenedProvider(name=name, provider=provider, sandbox_base_url=sandbox.base_url, _client=client)
