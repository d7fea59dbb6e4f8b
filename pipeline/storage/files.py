"""Writing local files so that a reader never sees half of one, and OS errors translated.

A file is written to a *partial* path beside its destination, flushed to disk, checked, and
only then given its final name; a failure (a full disk, a permission) leaves the destination as
it was and removes the partial file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import DiskFull, StorageAuthError, StorageError
from pipeline.hashing import sha256_file

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM})


def partial_path(dest: Path) -> Path:
    """Where ``dest`` is written before it is published (hidden, per process)."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.partial")


def translate_os_error(exc: OSError, *, what: str) -> StorageError:
    """The :mod:`pipeline.errors` exception for an OS error while doing ``what``."""
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return DiskFull(f"{what}: no space left on the device ({reason})")
    if exc.errno in _NO_PERMISSION:
        return StorageAuthError(f"{what}: permission denied ({reason})")
    return StorageError(f"{what}: {reason}")


def make_dirs(directory: Path) -> None:
    """``mkdir -p directory`` with OS errors translated."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise translate_os_error(exc, what=f"creating {directory}") from exc


def _fsync_dir(directory: Path) -> None:
    # Makes the new name itself durable; some filesystems cannot open a directory: then skip.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(
    dest: Path, chunks: Iterable[bytes], *, expected_sha256: str | None = None, replace: bool = False
) -> str:
    """Write ``chunks`` to ``dest`` atomically and return the sha256 of what is now on disk.

    The bytes are read back from disk and, when ``expected_sha256`` is given, must match it
    before the file is published. Without ``replace`` the file is published with a hard link,
    which fails with FileExistsError if ``dest`` appeared meanwhile (a conditional write); with
    ``replace`` it atomically replaces ``dest``. OS errors become DiskFull, StorageAuthError or
    StorageError; ``dest`` is left untouched by any failure.
    """
    partial = partial_path(dest)
    what = f"writing {dest}"
    try:
        with partial.open("wb") as stream:
            for chunk in chunks:
                stream.write(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        written = sha256_file(partial)
        if expected_sha256 is not None and written != expected_sha256:
            raise StorageError(
                f"{what}: read back sha256 {written}, expected {expected_sha256}: the source changed "
                "while it was copied"
            )
        if replace:
            os.replace(partial, dest)
        else:
            _link_new(partial, dest)
        _fsync_dir(dest.parent)
        return written
    except FileExistsError:
        raise
    except OSError as exc:
        raise translate_os_error(exc, what=what) from exc
    finally:
        partial.unlink(missing_ok=True)


def _link_new(partial: Path, dest: Path) -> None:
    """Give ``partial`` the name ``dest`` unless ``dest`` exists (FileExistsError then)."""
    try:
        os.link(partial, dest)
    except OSError as exc:
        if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}:
            raise
        # Filesystems without hard links: a rename after an existence check is the best left.
        if dest.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(dest)) from exc
        os.rename(partial, dest)


def sha256_of(path: Path, *, what: str) -> str:
    """sha256 of ``path`` with OS errors translated (for files a store itself reads)."""
    try:
        return sha256_file(path)
    except OSError as exc:
        raise translate_os_error(exc, what=what) from exc
