"""Downloading a generated clip: allow-listed hosts, size cap, atomic rename, ffprobe check.

The bytes stream into a hidden ``.part`` file beside the destination while being counted and
hashed; only a file that ffprobe confirms (a video stream of the requested duration, an audio
stream iff audio was asked for) is renamed into place. Any failure removes the partial file.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from pipeline.errors import (
    DownloadError,
    DownloadIncomplete,
    MediaError,
    ProviderError,
    RateLimited,
    TransportError,
    UpstreamError,
)
from pipeline.generation import GenerationSpec
from pipeline.media.probe import Probe, probe
from pipeline.providers.base import DownloadedClip
from pipeline.providers.retry import parse_retry_after
from pipeline.providers.settings import MAX_DOWNLOAD_BYTES

CHUNK_BYTES: Final = 1024 * 1024
MAX_REDIRECTS: Final = 3


@dataclass(frozen=True)
class DownloadPolicy:
    """Where downloads may come from and how big they may be."""

    #: A host matches a domain if it equals it or is a subdomain of it (HTTPS only).
    domains: tuple[str, ...] = ("runcomfy.net", "runcomfy.com")
    #: Exact ``scheme://host:port`` origins allowed in addition, e.g. the sandbox on loopback.
    origins: tuple[str, ...] = ()
    max_bytes: int = MAX_DOWNLOAD_BYTES
    duration_tolerance_s: float = 0.25
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(60.0, connect=10.0))


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, with the default port made explicit."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _is_ip_or_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: str, policy: DownloadPolicy) -> None:
    """Raise DownloadError unless ``url`` is on the allow-list.

    Allowed: an explicitly allowed origin (the sandbox), or HTTPS on a CDN domain. Never an IP
    literal or a loopback name otherwise, whatever the domain list says.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise DownloadError(f"refusing to download from {url!r}: no host")
    if origin_of(url) in {origin_of(o) for o in policy.origins}:
        return
    if _is_ip_or_loopback(host):
        raise DownloadError(f"refusing to download from {host}: IP literals and loopback are not allowed")
    if parts.scheme != "https":
        raise DownloadError(f"refusing to download from {url!r}: only https is allowed")
    if not _matches_domain(host, policy.domains):
        raise DownloadError(f"refusing to download from {host}: not one of the provider's CDN hosts")


def _matches_domain(host: str, domains: Iterable[str]) -> bool:
    for domain in domains:
        d = domain.lower().lstrip("*.").rstrip(".")
        if host == d or host.endswith("." + d):
            return True
    return False


def _status_error(response: httpx.Response, url: str) -> ProviderError:
    code = response.status_code
    where = f"download {urlsplit(url).path or url}: HTTP {code}"
    if code == 429:
        return RateLimited(where, retry_after=parse_retry_after(response.headers), status_code=code)
    if code == 408:
        return TransportError(where, status_code=code)
    if code >= 500:
        return UpstreamError(where, status_code=code)
    return DownloadError(where, status_code=code)


def part_path_for(dest: Path) -> Path:
    """A unique hidden temporary path beside ``dest`` (same file system, so rename is atomic)."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")


async def fetch_to_file(
    client: httpx.AsyncClient, url: str, part: Path, policy: DownloadPolicy
) -> tuple[int, str, str]:
    """Stream ``url`` into ``part``; return (size, sha256, final url). Removes ``part`` on failure.

    The size cap applies up front (Content-Length) and while counting (chunked answers).
    Redirects are followed by hand so that each hop is checked against the allow-list.
    """
    current = url
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(current, policy)
            try:
                async with client.stream("GET", current, timeout=policy.timeout) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = urljoin(current, location)
                        continue
                    if response.status_code != 200:
                        raise _status_error(response, current)
                    declared = response.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
                        raise DownloadError(
                            f"refusing download of {int(declared)} bytes: over the "
                            f"{policy.max_bytes}-byte cap"
                        )
                    size, digest = await _write_stream(response, part, policy.max_bytes)
                    if declared is not None and declared.isdigit() and size != int(declared):
                        raise DownloadIncomplete(f"download truncated: {size} of {declared} bytes")
                    return size, digest, current
            except httpx.HTTPError as exc:
                raise TransportError(
                    f"download interrupted ({type(exc).__name__}): {urlsplit(current).path}"
                ) from exc
        raise DownloadError(f"download of {url!r}: more than {MAX_REDIRECTS} redirects")
    except BaseException:
        await anyio.Path(part).unlink(missing_ok=True)
        raise


async def _write_stream(response: httpx.Response, part: Path, max_bytes: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    async with await anyio.open_file(part, "wb") as fh:
        async for chunk in response.aiter_bytes(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(f"download exceeded the {max_bytes}-byte cap; partial file removed")
            digest.update(chunk)
            await fh.write(chunk)
    return size, digest.hexdigest()


def verify_clip(info: Probe, spec: GenerationSpec, tolerance_s: float) -> tuple[int, int]:
    """Check a probed clip against the request; return (width, height).

    A missing video stream or a wrong duration means the bytes are bad (DownloadIncomplete,
    worth another download); an audio track that contradicts ``generate_audio`` is final.
    """
    video = info.video
    if video is None or not video.width or not video.height:
        raise DownloadIncomplete(f"{info.path}: no video stream")
    duration = video.duration or info.duration
    if abs(duration - spec.duration) > tolerance_s:
        raise DownloadIncomplete(
            f"{info.path}: duration {duration:.3f} s, requested {spec.duration} s (±{tolerance_s} s)"
        )
    has_audio = info.audio is not None
    if has_audio != spec.generate_audio:
        wanted = "an audio track" if spec.generate_audio else "no audio track"
        raise DownloadError(f"{info.path}: expected {wanted}, got {'one' if has_audio else 'none'}")
    return video.width, video.height


def _verify_and_place(
    part: Path, dest: Path, spec: GenerationSpec, policy: DownloadPolicy
) -> tuple[Probe, tuple[int, int]]:
    # Blocking work (ffprobe, rename, unlink) kept together, run off the event loop.
    try:
        try:
            info = probe(part)
        except MediaError as exc:
            raise DownloadIncomplete(f"downloaded file is not readable media: {exc}") from exc
        size = verify_clip(info, spec, policy.duration_tolerance_s)
        part.replace(dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return info, size


async def download_clip(
    client: httpx.AsyncClient, url: str, dest: Path, spec: GenerationSpec, policy: DownloadPolicy
) -> DownloadedClip:
    """One download attempt: fetch into a temporary file, verify with ffprobe, rename into place.

    Retrying is the caller's business (the adapter retries DownloadIncomplete and transport
    errors). ``dest``'s directory is created if needed.
    """
    await anyio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
    part = part_path_for(dest)
    size, digest, final_url = await fetch_to_file(client, url, part, policy)
    info, (width, height) = await asyncio.to_thread(_verify_and_place, part, dest, spec, policy)
    video = info.video
    return DownloadedClip(
        path=dest,
        url=final_url,
        size=size,
        sha256=digest,
        duration=(video.duration if video and video.duration else info.duration),
        width=width,
        height=height,
        has_audio=info.audio is not None,
    )
