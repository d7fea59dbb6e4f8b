"""How image inputs reach the provider: ``KLINGFLOW_IMAGE_TRANSPORT`` = ``data-uri`` | ``s3`` | ``auto``.

A hosted provider fetches images itself, so a script's local ``start_image``/``end_image`` and a
chained segment's start frame (the previous clip's last frame, a local PNG) must become
something it can read:

- ``data-uri``: the image inline, ``data:image/png;base64,…`` — what RunComfy's partner nodes
  send for every image (``runcomfy/media.py``: at most 6 MiB of image and 32 megapixels,
  ``runcomfy/client.py``: at most 64 MiB per request). A larger image is re-encoded as JPEG
  (lower quality first, then smaller) until it fits.
- ``s3``: the image staged once per content under ``{prefix}/_staging/`` of an S3 location and
  handed over as a presigned HTTPS GET URL (:mod:`pipeline.archive.staging`).
- ``auto`` (the default): S3 when one is configured (``KLINGFLOW_SHARED_URL`` or the script's
  ``output.archive`` on ``s3://``), else a data URI.

``https://`` URLs in a script pass through unchanged. The sandbox in its convenient mode keeps
its own upload endpoint. Whatever the transport, a job's identity names images by content
(sha256 of the file), never by the URL they travelled under.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

import anyio
import httpx

from pipeline.errors import ConfigError, InputError, InputNotFound, ProviderError

#: RunComfy's partner nodes refuse an image over 6 MiB or 32 megapixels (runcomfy/media.py).
MAX_IMAGE_BYTES: Final = 6 * 1024 * 1024
MAX_PIXELS: Final = 32_000_000
#: ... and a request over 64 MiB (runcomfy/client.py): two images always fit.
MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024
#: JPEG qualities (ffmpeg's -q:v, 2 = best) tried in turn, then the picture is halved.
JPEG_QUALITIES: Final = (2, 5, 9, 15)
MAX_HALVINGS: Final = 4
_MAGIC: Final = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


class ImageTransportName(StrEnum):
    """The values of ``KLINGFLOW_IMAGE_TRANSPORT``."""

    DATA_URI = "data-uri"
    S3 = "s3"
    AUTO = "auto"


class ImageTransport(Protocol):
    """Turns a local image path (or an https URL) into what the provider's image field takes."""

    name: str

    async def url_for(self, path_or_url: str) -> str:
        """The value to send for the image at ``path_or_url``."""
        ...

    async def aclose(self) -> None:
        """Release what the transport holds."""
        ...


async def _local(path_or_url: str) -> Path | str:
    """An https URL unchanged, else the existing local file (InputNotFound, 66, when missing)."""
    if path_or_url.startswith("https://"):
        return path_or_url
    if path_or_url.startswith("http://"):
        raise InputError(f"{path_or_url}: image URLs must be https:// (the provider fetches them itself)")
    path = Path(path_or_url)
    if not await anyio.Path(path).is_file():
        raise InputNotFound(f"{path}: no such image")
    return path


def sniff(data: bytes) -> str | None:
    """``image/png`` or ``image/jpeg`` from the file's first bytes, else None."""
    return next((mime for magic, mime in _MAGIC.items() if data.startswith(magic)), None)


def _reencode(path: Path, limit: int) -> bytes:
    """``path`` as a JPEG of at most ``limit`` bytes and MAX_PIXELS (blocking: ffmpeg)."""
    # Imported here: the media layer is only needed when an image is too large to send as is.
    from pipeline.media.run import ffmpeg

    with tempfile.TemporaryDirectory(prefix="kf_image_") as tmp:
        out = Path(tmp) / "image.jpg"
        for halving in range(MAX_HALVINGS + 1):
            factor = 2**halving
            # Fit 32 megapixels first (the area scales by the square of the side), then halve.
            scale = (
                f"scale='trunc(iw*min(1,sqrt({MAX_PIXELS}/(iw*ih)))/{factor}/2)*2'"
                f":'trunc(ih*min(1,sqrt({MAX_PIXELS}/(iw*ih)))/{factor}/2)*2'"
            )
            for quality in JPEG_QUALITIES:
                ffmpeg(
                    [
                        *("-y", "-v", "error", "-i", str(path), "-frames:v", "1", "-vf", scale),
                        *("-q:v", str(quality), "-f", "image2", "-c:v", "mjpeg", str(out)),
                    ],
                    timeout=120,
                    what=f"re-encode {path.name} as JPEG",
                )
                data = out.read_bytes()
                if len(data) <= limit:
                    return data
    raise InputError(f"{path}: cannot be made smaller than {limit} bytes as a JPEG")


def data_uri_for(path: Path, *, limit: int = MAX_IMAGE_BYTES) -> str:
    """``data:<mime>;base64,…`` for ``path``: as is when it is a PNG/JPEG within ``limit``,
    else re-encoded as JPEG (blocking)."""
    data = path.read_bytes()
    mime = sniff(data)
    if mime is None or len(data) > limit:
        data, mime = _reencode(path, limit), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class DataUriTransport:
    """Images inline as data URIs (see the module docstring)."""

    name = "data-uri"

    def __init__(self, *, limit: int = MAX_IMAGE_BYTES) -> None:
        self.limit = limit

    async def url_for(self, path_or_url: str) -> str:
        """The data URI of a local image, or the https URL unchanged."""
        local = await _local(path_or_url)
        if isinstance(local, str):
            return local
        return await asyncio.to_thread(data_uri_for, local, limit=self.limit)

    async def aclose(self) -> None:
        """Nothing to release."""


class S3Transport:
    """Images staged in S3 and sent as presigned HTTPS GET URLs."""

    name = "s3"

    def __init__(self, location: str) -> None:
        # Imported here: boto3 is only needed when images really go through S3.
        from pipeline.archive.location import S3Location, parse_location
        from pipeline.archive.staging import S3ImageStager

        parsed = parse_location(location)
        if not isinstance(parsed, S3Location):
            raise ConfigError(f"KLINGFLOW_IMAGE_TRANSPORT=s3 needs an s3:// location (got {location!r})")
        self.location = str(parsed)
        self._stager = S3ImageStager.for_location(parsed)

    async def url_for(self, path_or_url: str) -> str:
        """A presigned URL of the staged local image, or the https URL unchanged."""
        local = await _local(path_or_url)
        if isinstance(local, str):
            return local
        return await asyncio.to_thread(self._stager.stage, local)

    async def aclose(self) -> None:
        """Release the S3 client's connections."""
        await asyncio.to_thread(self._stager.close)


#: The sandbox-only upload path, relative to the API base URL.
UPLOAD_PATH: Final = "/sandbox/uploads"


class SandboxUploadTransport:
    """The convenient sandbox's own door: local images uploaded to it (never a real API's)."""

    name = "sandbox-upload"

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")

    async def url_for(self, path_or_url: str) -> str:
        """The sandbox URL of the uploaded image (http URLs pass: it is all loopback)."""
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        local = await _local(path_or_url)
        assert isinstance(local, Path)
        return await self._upload(local)

    async def _upload(self, path: Path) -> str:
        # Imported here to keep the adapter module's import of this one one-way.
        from pipeline.providers.runcomfy import error_from_response, translate_httpx_error

        data = await anyio.Path(path).read_bytes()
        try:
            response = await self._client.post(f"{self._base_url}{UPLOAD_PATH}", content=data)
        except httpx.HTTPError as exc:
            raise translate_httpx_error(exc, operation=f"upload {path.name}") from exc
        error = error_from_response(response, operation=f"upload {path.name}")
        if error is not None:
            raise error
        url = response.json().get("url")
        if not isinstance(url, str):
            raise ProviderError(f"upload {path.name}: the sandbox gave no URL")
        return url

    async def aclose(self) -> None:
        """The client belongs to the caller."""


def s3_location_for(shared_url: str | None, archive: str | None) -> str | None:
    """Where ``s3``/``auto`` stage images: ``KLINGFLOW_SHARED_URL``, else the script's archive,
    whichever is on ``s3://`` first."""
    for candidate in (shared_url, archive):
        if candidate and candidate.startswith("s3://"):
            return candidate
    return None


def choose_image_transport(
    setting: ImageTransportName | str, *, shared_url: str | None = None, archive: str | None = None
) -> ImageTransport:
    """The transport ``setting`` names; ``auto`` = S3 when one is configured, else data URIs."""
    try:
        name = ImageTransportName(setting)
    except ValueError:
        choices = ", ".join(n.value for n in ImageTransportName)
        raise ConfigError(f"KLINGFLOW_IMAGE_TRANSPORT: expected one of {choices} (got {setting!r})") from None
    location = s3_location_for(shared_url, archive)
    if name is ImageTransportName.S3:
        if location is None:
            raise ConfigError(
                "KLINGFLOW_IMAGE_TRANSPORT=s3 needs an S3 location: set KLINGFLOW_SHARED_URL=s3://… "
                "or the script's output.archive to s3://…"
            )
        return S3Transport(location)
    if name is ImageTransportName.AUTO and location is not None:
        return S3Transport(location)
    return DataUriTransport()
