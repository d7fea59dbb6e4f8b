"""pipeline.hashing: streaming sha256 of files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.errors import InputNotFound
from pipeline.hashing import CHUNK_SIZE, iter_file, sha256_chunks, sha256_file


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 17])
def test_sha256_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path), chunk_size=7) == hashlib.sha256(data).hexdigest()


def test_file_is_read_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 25)
    assert [len(c) for c in iter_file(path, 10)] == [10, 10, 5]


def test_sha256_chunks_equals_whole() -> None:
    assert sha256_chunks([b"ab", b"", b"c"]) == hashlib.sha256(b"abc").hexdigest()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="no such file"):
        sha256_file(tmp_path / "missing")
