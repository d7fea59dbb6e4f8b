"""What an image field of a submit holds: a data URI, an https URL, a sandbox upload, or junk.

The sandbox cannot fetch remote images (it runs offline); a ``data:`` URI is decoded here, and
checked the way a careful API would (base64, a real PNG/JPEG matching its declared type, at most
:data:`MAX_DATA_URI_BYTES`). The request log records what arrived, never the URI itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pipeline.generation import ASPECT_RATIOS

#: Decoded size limit of one data-URI image: the partner nodes' limit
#: (runcomfy-com/comfyui-runcomfy-partner-nodes ``runcomfy/media.py``, 6 MiB per image).
MAX_DATA_URI_BYTES: Final = 6 * 1024 * 1024
MIME_BY_MAGIC: Final = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg"}
UPLOAD_PATH: Final = "/cdn/uploads/"

Kind = Literal["data-uri", "https", "http", "upload", "invalid"]


@dataclass(frozen=True)
class ImageInput:
    """One image field's value, classified (and decoded, for a data URI)."""

    kind: Kind
    host: str | None = None
    mime: str | None = None
    sha256: str | None = None
    size: int | None = None
    #: Why a data URI cannot be used (bad base64, not an image, too large), else None.
    problem: str | None = None
    data: bytes | None = field(default=None, repr=False)
    url_path: str | None = None

    def log_entry(self) -> dict[str, Any]:
        """What the request log keeps: the kind and a digest, never the bytes or the URI."""
        return {
            "kind": self.kind,
            "sha256": self.sha256,
            "bytes": self.size,
            "mime": self.mime,
            "host": self.host,
        }


def classify(value: str) -> ImageInput:
    """Classify (and for ``data:`` decode and check) one image field's value."""
    if value[:5].lower() == "data:":
        return _data_uri(value)
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return ImageInput("invalid", problem="not a URL")
    if parts.scheme not in ("http", "https") or not host:
        return ImageInput("invalid", problem="expected an https:// URL or a data:image/...;base64, URI")
    if parts.path.startswith(UPLOAD_PATH):
        return ImageInput("upload", host=host, url_path=parts.path)
    return ImageInput("https" if parts.scheme == "https" else "http", host=host, url_path=parts.path)


def _data_uri(value: str) -> ImageInput:
    header, comma, payload = value.partition(",")
    params = header[5:].split(";")
    mime = params[0].strip().lower()
    if not comma or "base64" not in (p.strip().lower() for p in params[1:]):
        return ImageInput(
            "data-uri", mime=mime or None, problem="a data URI must be base64: data:image/png;base64,…"
        )
    # Refuse an oversized payload before decoding it (4 characters carry 3 bytes).
    if len(payload) > math.ceil(MAX_DATA_URI_BYTES / 3) * 4 + 4:
        return ImageInput("data-uri", mime=mime, problem=f"image over {MAX_DATA_URI_BYTES} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return ImageInput("data-uri", mime=mime, problem="invalid base64 in the data URI")
    digest = hashlib.sha256(data).hexdigest()
    found = next((m for magic, m in MIME_BY_MAGIC.items() if data.startswith(magic)), None)
    problem = None
    if len(data) > MAX_DATA_URI_BYTES:
        problem = f"image over {MAX_DATA_URI_BYTES} bytes"
    elif found is None:
        problem = "the data URI is not a PNG or JPEG image"
    elif mime not in (found, "image/jpg" if found == "image/jpeg" else found):
        problem = f"the data URI says {mime or 'no type'} but holds {found}"
    return ImageInput(
        "data-uri", mime=mime, sha256=digest, size=len(data), problem=problem, data=None if problem else data
    )


def dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG or JPEG from its header, or None when it cannot be read."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return (width, height) if width and height else None
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return (width, height) if width and height else None
        i += 2 + length
    return None


def closest_aspect(width: int, height: int) -> str:
    """The supported aspect ratio nearest to ``width``:``height`` (on a log scale)."""

    def distance(ratio: str) -> float:
        w, h = (int(x) for x in ratio.split(":"))
        return abs(math.log(width / height) - math.log(w / h))

    return min(ASPECT_RATIOS, key=distance)
