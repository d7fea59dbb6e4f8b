"""The object-store interface: verified, idempotent writes that never overwrite.

Two implementations, picked by :func:`pipeline.storage.factory.open_store`:
:class:`~pipeline.storage.s3.S3Store` (a bucket) and :class:`~pipeline.storage.local.LocalStore`
(a directory, the same keys as relative paths). For both, an identical object already at the
key is not written again (``PRESENT``), and a different one is never overwritten
(:class:`~pipeline.errors.StorageConflict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol, TypeVar

from pipeline.errors import StorageError
from pipeline.storage.location import StoreLocation

StorageErrorT = TypeVar("StorageErrorT", bound=StorageError)

CONTENT_TYPES: Final = {
    ".mp4": "video/mp4",
    ".srt": "application/x-subrip",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".json": "application/json",
}


class Outcome(StrEnum):
    """What happened to one file."""

    UPLOADED = "uploaded"
    PRESENT = "already archived"
    REFUSED = "refused"


@dataclass(frozen=True)
class PutResult:
    """One file stored (or found already stored) and verified."""

    outcome: Outcome
    key: str
    uri: str
    size: int
    sha256: str


class ObjectStore(Protocol):
    """Where objects are kept. ``put`` returns only once the object is verified."""

    @property
    def location(self) -> StoreLocation:
        """Where this store lives."""
        ...

    def check(self) -> None:
        """Fail early (StorageAuthError, StorageUnavailable, DiskFull) if nothing can be stored."""
        ...

    def put(self, key: str, path: Path, sha256: str) -> PutResult:
        """Store ``path`` (whose content hashes to ``sha256``) under ``key``, verified.

        Returns ``PRESENT`` when an identical object is already there; raises StorageConflict
        when a different one is, and StorageError when what was stored does not verify.
        """
        ...

    def read_back(self, key: str) -> tuple[int, str] | None:
        """Size and sha256 of the stored object at ``key`` (read in full), or None if absent."""
        ...

    def get(self, key: str, dest: Path, sha256: str) -> bool:
        """Copy ``key`` to ``dest`` if it is there with this sha256; False when it is absent."""
        ...

    def close(self) -> None:
        """Release connections (the store cannot be used afterwards)."""
        ...


def content_type(name: str) -> str:
    """The MIME type stored with a file."""
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def kept(error: StorageErrorT, path: Path) -> StorageErrorT:
    """``error`` with the local copy's path added to its message (same class)."""
    return type(error)(f"{error}; the local copy is kept at {path}")
