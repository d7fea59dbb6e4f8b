"""The one place that picks the provider: RunComfy when a token is configured, else the sandbox.

Example::

    async with open_provider(None, load_settings()) as opened:
        url = await opened.image_url("assets/deck.png")   # a data URI, an S3 URL, or a sandbox upload
        report = await run_job(opened.provider, spec, Path("out/clip.mp4"))

What each choice wires:

- ``runcomfy``: the adapter on the real API, images by ``KLINGFLOW_IMAGE_TRANSPORT``
  (:mod:`pipeline.providers.images`), downloads from the CDN allow-list through a client that
  checks addresses (:mod:`pipeline.providers.transport`);
- ``runcomfy`` with ``rehearse``: the same, against a realistic sandbox in this process
  (:mod:`pipeline.providers.rehearsal`);
- ``sandbox``: the convenient sandbox (in this process, or ``KLINGFLOW_SANDBOX_URL``), which is
  the provider, so its own loopback origin is trusted for downloads and takes uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx

from pipeline.errors import AuthError, ConfigError
from pipeline.providers import transport
from pipeline.providers.base import Provider
from pipeline.providers.images import (
    UPLOAD_PATH,
    ImageTransport,
    SandboxUploadTransport,
    choose_image_transport,
)
from pipeline.providers.runcomfy import RunComfyProvider
from pipeline.providers.settings import ProviderSettings

__all__ = ["UPLOAD_PATH", "OpenedProvider", "ProviderName", "choose_provider", "open_provider"]


class ProviderName(StrEnum):
    """The providers klingflow can buy generations from."""

    RUNCOMFY = "runcomfy"
    FAL = "fal"
    KLING = "kling"
    SANDBOX = "sandbox"


def _has_key(name: ProviderName) -> bool:
    """Whether fal's key / Kling's key pair is configured (read from the environment)."""
    if name is ProviderName.FAL:
        from pipeline.providers.fal_settings import FalSettings

        return FalSettings().has_key
    from pipeline.providers.kling_settings import KlingSettings

    return KlingSettings().has_keys


#: What each keyed provider needs, for the AuthError of a missing key.
_KEYS = {
    ProviderName.FAL: "no fal.ai key: set FAL_KEY",
    ProviderName.KLING: "no Kling key pair: set KLING_ACCESS_KEY and KLING_SECRET_KEY",
}


def choose_provider(
    requested: str | None,
    settings: ProviderSettings,
    *,
    rehearse: bool = False,
    has_key: Callable[[ProviderName], bool] = _has_key,
) -> ProviderName:
    """The provider to use: the requested one, else RunComfy with a token and the sandbox without.

    Asking for RunComfy without a token, fal without ``FAL_KEY`` or Kling without
    ``KLING_ACCESS_KEY`` + ``KLING_SECRET_KEY`` is an AuthError (exit 77), not a silent
    fallback — unless it is a rehearsal, which brings its own sandbox and credentials. An
    unknown name is a ConfigError (78) listing the valid ones. ``has_key`` reads fal's and
    Kling's keys (tests replace it).
    """
    if requested is None:
        return ProviderName.RUNCOMFY if settings.has_token or rehearse else ProviderName.SANDBOX
    try:
        name = ProviderName(requested)
    except ValueError:
        valid = ", ".join(p.value for p in ProviderName)
        raise ConfigError(f"unknown provider {requested!r}: use one of {valid}") from None
    if rehearse and name is ProviderName.SANDBOX:
        raise ConfigError(
            "--rehearse rehearses a real provider's path: use it with --provider runcomfy, fal or kling"
        )
    if rehearse:
        return name
    if name is ProviderName.RUNCOMFY and not settings.has_token:
        raise AuthError(
            "no RunComfy token: set RUNCOMFY_TOKEN or write ~/.config/runcomfy/token.json, "
            "or use --provider sandbox"
        )
    if name in _KEYS and not has_key(name):
        raise AuthError(f"{_KEYS[name]}, or rehearse with --rehearse (no key needed)")
    return name


@dataclass
class OpenedProvider:
    """A provider ready to use, how images reach it, and its sandbox when it has one."""

    name: ProviderName
    provider: Provider
    images: ImageTransport
    sandbox_base_url: str | None = None
    #: The sandbox behind this provider (in-process or rehearsal): its ledger and request log.
    sandbox: object | None = None
    rehearsal: bool = False

    async def image_url(self, path_or_url: str) -> str:
        """What the provider's image field takes for a local path or an https URL."""
        return await self.images.url_for(path_or_url)


async def upload_to_sandbox(client: httpx.AsyncClient, base_url: str, path: Path) -> str:
    """Upload a local PNG/JPEG to the sandbox (``POST /v1/sandbox/uploads``); return its URL."""
    return await SandboxUploadTransport(client, base_url).url_for(str(path))


def _timeout(settings: ProviderSettings) -> httpx.Timeout:
    return httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)


@contextlib.asynccontextmanager
async def open_provider(
    requested: str | None,
    settings: ProviderSettings,
    *,
    sandbox_config: object | None = None,
    http_client: httpx.AsyncClient | None = None,
    download_client: httpx.AsyncClient | None = None,
    sandbox_url: str | None = None,
    rehearse: bool = False,
    image_transport: str = "auto",
    shared_url: str | None = None,
    archive: str | None = None,
    hosts: Mapping[str, str] | None = None,
) -> AsyncIterator[OpenedProvider]:
    """Open the chosen provider (see the module docstring).

    For the sandbox, start one in-process on loopback — or use the one already serving at
    ``sandbox_url`` (``klingflow sandbox serve``), whose requests outlive this process (what
    resuming after a crash needs). ``http_client``/``download_client`` replace the clients this
    function would make (tests). ``sandbox_config`` is a
    :class:`~pipeline.providers.sandbox.config.SandboxConfig` (typed loosely so that importing
    this module does not import FastAPI).
    """
    name = choose_provider(requested, settings, rehearse=rehearse)
    if name is ProviderName.FAL:
        from pipeline.providers.fal import open_fal
        from pipeline.providers.fal_settings import load_fal_settings

        async with open_fal(
            load_fal_settings(),
            rehearse=rehearse,
            api_client=http_client,
            download_client=download_client,
            image_transport=image_transport,
            shared_url=shared_url,
            archive=archive,
            sandbox_config=sandbox_config,
        ) as fal:
            yield fal
        return
    if name is ProviderName.KLING:
        from pipeline.providers.kling import open_kling
        from pipeline.providers.kling_settings import load_kling_settings

        async with open_kling(
            load_kling_settings(),
            rehearse=rehearse,
            api_client=http_client,
            download_client=download_client,
            image_transport=image_transport,
            shared_url=shared_url,
            archive=archive,
            latency_scale=getattr(sandbox_config, "latency_scale", 0.02),
            render_scale=getattr(sandbox_config, "render_scale", 1.0),
        ) as kling:
            yield kling
        return
    async with contextlib.AsyncExitStack() as stack:

        async def client(given: httpx.AsyncClient | None, make: httpx.AsyncClient) -> httpx.AsyncClient:
            if given is not None:
                await make.aclose()
                return given
            return await stack.enter_async_context(make)

        if name is ProviderName.RUNCOMFY:
            verify = None
            handle: object | None = None
            if rehearse:
                from pipeline.providers.rehearsal import rehearsal_sandbox

                scale = getattr(sandbox_config, "latency_scale", 0.02)
                render = getattr(sandbox_config, "render_scale", 1.0)
                # Starting the server blocks briefly; keep the event loop free meanwhile.
                cm = rehearsal_sandbox(latency_scale=scale, render_scale=render)
                rehearsal = await asyncio.to_thread(cm.__enter__)
                stack.push_async_callback(asyncio.to_thread, cm.__exit__, None, None, None)
                settings = settings.model_copy(
                    update={"base_url": rehearsal.base_url, "token": rehearsal.token}
                )
                hosts, verify, handle = rehearsal.hosts, rehearsal.ssl_context, rehearsal.handle
            timeout = _timeout(settings)
            api = await client(http_client, transport.api_client(timeout, verify=verify, hosts=hosts))
            cdn = await client(
                download_client,
                transport.download_client(
                    timeout,
                    allow_private=settings.allow_private_network or rehearse,
                    verify=verify,
                    hosts=hosts,
                ),
            )
            images = choose_image_transport(image_transport, shared_url=shared_url, archive=archive)
            stack.push_async_callback(images.aclose)
            provider = RunComfyProvider(settings, http_client=api, download_client=cdn)
            yield OpenedProvider(
                name=name,
                provider=provider,
                images=images,
                sandbox=handle,
                rehearsal=rehearse,
            )
            return
        api = await client(http_client, httpx.AsyncClient(timeout=_timeout(settings), follow_redirects=False))
        if sandbox_url is not None:
            base = sandbox_url.rstrip("/")
            origin = "/".join(base.split("/", 3)[:3])
            external = settings.model_copy(update={"base_url": base, "token": None})
            provider = RunComfyProvider(external, http_client=api, download_origins=(origin,), name="sandbox")
            yield OpenedProvider(
                name=name, provider=provider, images=SandboxUploadTransport(api, base), sandbox_base_url=base
            )
            return
        # Imported here, off the event loop (0.2–0.6 s): the sandbox brings FastAPI and uvicorn,
        # which RunComfy users never need.
        await asyncio.to_thread(importlib.import_module, "pipeline.providers.sandbox.server")
        from pipeline.providers.sandbox.config import SandboxConfig
        from pipeline.providers.sandbox.server import run_sandbox

        config = sandbox_config if isinstance(sandbox_config, SandboxConfig) else SandboxConfig()
        # Starting the server blocks briefly; keep the event loop free meanwhile.
        started = run_sandbox(config)
        sandbox = await asyncio.to_thread(started.__enter__)
        stack.push_async_callback(asyncio.to_thread, started.__exit__, None, None, None)
        sandbox_settings = settings.model_copy(update={"base_url": sandbox.base_url, "token": None})
        provider = RunComfyProvider(
            sandbox_settings, http_client=api, download_origins=(sandbox.origin,), name="sandbox"
        )
        yield OpenedProvider(
            name=name,
            provider=provider,
            images=SandboxUploadTransport(api, sandbox.base_url),
            sandbox_base_url=sandbox.base_url,
            sandbox=sandbox,
        )
