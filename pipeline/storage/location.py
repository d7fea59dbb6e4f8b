"""Where a store lives: ``s3://bucket/prefix`` or a local directory.

The archive (``output.archive``, ``klingflow archive --to``), the shared clip store
(``KLINGFLOW_SHARED_URL``) and image staging all take either form. Keys are built here so that
both kinds use the same layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError

# S3's bucket naming rules (the strict, DNS-compatible set that every store accepts).
_BUCKET = re.compile(r"^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def key_segment(value: str, what: str) -> str:
    """``value`` if it is safe as one segment of a storage key (or a directory name), else ConfigError.

    One segment: not empty, no ``/`` or ``\\``, not ``.`` or ``..``, no control characters.
    """
    if (
        not value
        or value in {".", ".."}
        or "/" in value
        or "\\" in value
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)
    ):
        raise ConfigError(f"{what} {value!r} cannot be used in a storage key")
    return value


def join_key(*parts: str) -> str:
    """Join key parts with ``/``, skipping empty ones (an empty prefix adds nothing)."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (``""`` for the bucket's root)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under this prefix."""
        return join_key(self.prefix, *parts)

    def uri(self, key: str) -> str:
        """``s3://bucket/key``, for messages and reports."""
        return f"s3://{self.bucket}/{key}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class LocalLocation:
    """A local directory; keys become relative paths under it."""

    root: Path

    def key(self, *parts: str) -> str:
        """The relative path (``/``-separated) of ``parts`` under the root."""
        return join_key(*parts)

    def uri(self, key: str) -> str:
        """The file path of ``key``, for messages and reports."""
        return str(self.root / key)

    def __str__(self) -> str:
        return str(self.root)


#: Either kind of place.
StoreLocation = S3Location | LocalLocation


def parse_location(text: str | Path, *, what: str = "storage") -> StoreLocation:
    """Parse ``s3://bucket/prefix`` or a local directory; ConfigError messages start with ``what``.

    >>> parse_location("s3://my-bucket/campaigns/")
    S3Location(bucket='my-bucket', prefix='campaigns')
    >>> parse_location("out/renders")
    LocalLocation(root=PosixPath('out/renders'))
    """
    if isinstance(text, Path):
        return LocalLocation(text)
    raw = text.strip()
    if not raw:
        raise ConfigError(f"{what}: empty; expected s3://bucket/prefix or a directory")
    if raw.lower().startswith("s3://"):
        bucket, _, prefix = raw[5:].partition("/")
        if not _BUCKET.match(bucket):
            raise ConfigError(
                f"{what} {raw!r}: {bucket!r} is not a valid bucket name "
                "(3-63 lowercase letters, digits, '.', '-')"
            )
        segments = [s for s in prefix.split("/") if s]
        for segment in segments:
            key_segment(segment, f"{what} {raw!r}: prefix segment")
        return S3Location(bucket=bucket, prefix="/".join(segments))
    if _SCHEME.match(raw):
        raise ConfigError(f"{what} {raw!r}: only s3://bucket/prefix or a local directory is supported")
    return LocalLocation(Path(raw).expanduser())
