"""Where an archive lives: ``s3://bucket/prefix`` or a local directory (default ``./renders``).

``output.archive`` in a render script and ``klingflow archive --to`` take either form. The
locations themselves and the key layout are storage's (:mod:`pipeline.storage.location`); the
archive adds its default and names itself in messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pipeline.storage.location import LocalLocation, S3Location, StoreLocation, join_key, key_segment
from pipeline.storage.location import parse_location as parse_store_location

__all__ = [
    "DEFAULT_ARCHIVE",
    "ArchiveLocation",
    "LocalLocation",
    "S3Location",
    "join_key",
    "key_segment",
    "parse_location",
]

DEFAULT_ARCHIVE: Final = "./renders"

ArchiveLocation = StoreLocation


def parse_location(text: str | Path | None) -> ArchiveLocation:
    """Parse ``s3://bucket/prefix`` or a local directory (``None`` or ``""``: ``./renders``).

    >>> parse_location(None)
    LocalLocation(root=PosixPath('renders'))
    """
    if isinstance(text, Path):
        return LocalLocation(text)
    return parse_store_location((text or "").strip() or DEFAULT_ARCHIVE, what="archive")
