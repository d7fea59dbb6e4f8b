"""pipeline.storage.files: atomic, verified, conditional local writes; OS errors translated."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from pipeline.errors import DiskFull, StorageAuthError, StorageError
from pipeline.storage.files import make_dirs, partial_path, translate_os_error, write_file


def test_write_returns_the_hash_of_what_is_on_disk(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    assert write_file(dest, [b"ab", b"c"]) == hashlib.sha256(b"abc").hexdigest()
    assert dest.read_bytes() == b"abc"
    assert not partial_path(dest).exists()


def test_a_mismatch_publishes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    with pytest.raises(StorageError, match="source changed"):
        write_file(dest, [b"abc"], expected_sha256="0" * 64)
    assert not dest.exists()
    assert not partial_path(dest).exists()


def test_without_replace_an_existing_file_is_kept(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_file(dest, [b"second"])
    assert dest.read_bytes() == b"first"
    write_file(dest, [b"second"], replace=True)
    assert dest.read_bytes() == b"second"


def test_full_disk(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    partial_path(dest).symlink_to("/dev/full")
    with pytest.raises(DiskFull, match="no space left"):
        write_file(dest, [b"x" * 100_000])
    assert not dest.exists()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, DiskFull),
        (errno.EDQUOT, DiskFull),
        (errno.EFBIG, DiskFull),
        (errno.EACCES, StorageAuthError),
        (errno.EPERM, StorageAuthError),
        (errno.EIO, StorageError),
        (errno.EROFS, StorageError),
    ],
)
def test_os_errors_map(code: int, expected: type[StorageError]) -> None:
    error = translate_os_error(OSError(code, "reason"), what="writing x")
    assert type(error) is expected
    assert str(error).startswith("writing x: ")


def test_make_dirs_translates_os_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    make_dirs(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    with pytest.raises(StorageError, match=r"creating .*file/x"):
        make_dirs(tmp_path / "file" / "x")
