"""File digests: SHA-256 in bounded chunks, InputNotFound for a missing file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.errors import InputNotFound
from pipeline.hashing import iter_file, sha256_chunks, sha256_file


def test_empty_file_has_the_known_digest(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sha256_file(path) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_chunked_digest_equals_whole_digest(tmp_path: Path) -> None:
    data = bytes(range(256)) * 41  # not a multiple of the chunk size
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=100) == expected
    assert sha256_file(str(path)) == expected
    assert sha256_chunks([data[:7], b"", data[7:]]) == expected


def test_iter_file_yields_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 250)
    chunks = list(iter_file(path, chunk_size=100))
    assert [len(c) for c in chunks] == [100, 100, 50]


def test_missing_file_and_directory_are_input_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="no such file"):
        sha256_file(tmp_path / "absent.mp4")
    with pytest.raises(InputNotFound):
        sha256_file(tmp_path)
