"""Content digests of files, computed in bounded memory.

The archive, the manifest and the provider's download checks all identify a file by the
SHA-256 of its bytes (hex, lowercase); this is the one place that reads a file to compute it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import InputNotFound

#: Read size: large enough that hashing runs at disk speed, small enough to stay off the heap.
CHUNK_SIZE = 1024 * 1024


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    """Hex SHA-256 of the concatenation of ``chunks`` (e.g. a streamed HTTP or S3 body)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def iter_file(path: Path, chunk_size: int = CHUNK_SIZE) -> Iterable[bytes]:
    """Yield the bytes of ``path`` in chunks of at most ``chunk_size``."""
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_size):
            yield chunk


def sha256_file(path: str | Path, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks (never whole into memory).

    Raises InputNotFound when the file does not exist.

    >>> sha256_file("master.mp4")  # doctest: +SKIP
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFound(f"{p}: no such file")
    return sha256_chunks(iter_file(p, chunk_size))
