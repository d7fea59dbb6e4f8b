"""An object store in a local directory, with the S3 layout as relative paths.

Files are written beside their destination, read back, and published with a hard link, which
fails if the name appeared meanwhile (a conditional write, as ``If-None-Match: *`` is in S3).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from pipeline.errors import StorageConflict, StorageError, StorageUnavailable
from pipeline.hashing import iter_file
from pipeline.storage.base import Outcome, PutResult, kept
from pipeline.storage.files import partial_path, sha256_of, translate_os_error, write_file
from pipeline.storage.location import LocalLocation


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, under another user
    return True


def remove_stale_partials(dest: Path) -> list[Path]:
    """Remove partial copies of ``dest`` whose writer is gone.

    :func:`~pipeline.storage.files.write_file` removes its partial file whatever happens, except
    when the process is killed outright (SIGKILL, power loss); such a partial is named after the
    dead process and is removed by the next write of the same file. Returns what was removed.
    """
    removed: list[Path] = []
    mine = partial_path(dest).name
    prefix, suffix = f".{dest.name}.", ".partial"
    for path in dest.parent.glob(f"{glob.escape(prefix)}*{suffix}"):
        pid = path.name[len(prefix) : -len(suffix)]
        if path.name == mine or not pid.isdigit() or _process_alive(int(pid)):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class LocalStore:
    """An object store in a local directory, with the S3 layout as relative paths."""

    def __init__(self, location: LocalLocation) -> None:
        self._location = location

    @property
    def location(self) -> LocalLocation:
        """The directory."""
        return self._location

    def check(self) -> None:
        """Create the directory if needed (permission → StorageAuthError, full → DiskFull)."""
        root = self._location.root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise translate_os_error(exc, what=f"creating the store directory {root}") from exc
        if not root.is_dir():
            raise StorageUnavailable(f"store {root} is not a directory")

    def put(self, key: str, path: Path, sha256: str) -> PutResult:
        """Copy ``path`` to ``root/key`` unless an identical file is there; read back first."""
        dest = self._location.root / key
        uri = str(dest)
        size = path.stat().st_size
        if dest.parent.is_dir():
            remove_stale_partials(dest)
        if dest.exists():
            return self._confirm_existing(key, dest, path, size, sha256)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise kept(translate_os_error(exc, what=f"creating {dest.parent}"), path) from exc
        try:
            write_file(dest, iter_file(path), expected_sha256=sha256)
        except FileExistsError:
            return self._confirm_existing(key, dest, path, size, sha256)
        except StorageError as exc:
            raise kept(exc, path) from exc
        return PutResult(Outcome.UPLOADED, key, uri, size, sha256)

    def get(self, key: str, dest: Path, sha256: str) -> bool:
        """Copy ``root/key`` to ``dest`` (published only when its sha256 matches); False if absent."""
        source = self._location.root / key
        if not source.is_file():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_file(dest, iter_file(source), expected_sha256=sha256, replace=True)
        return True

    def close(self) -> None:
        """Nothing to release for a directory."""

    def read_back(self, key: str) -> tuple[int, str] | None:
        """Size and sha256 of ``root/key``, or None when it does not exist."""
        dest = self._location.root / key
        if not dest.is_file():
            return None
        return dest.stat().st_size, sha256_of(dest, what=f"reading {dest}")

    def _confirm_existing(self, key: str, dest: Path, path: Path, size: int, sha256: str) -> PutResult:
        stored = self.read_back(key)
        if stored != (size, sha256):
            got = f"{stored[0]} bytes, sha256 {stored[1]}" if stored else "not a file"
            raise StorageConflict(
                f"{dest}: a different file is already archived there ({got}; ours: {size} bytes, "
                f"sha256 {sha256}); refusing to overwrite it. The local copy is kept at {path}"
            )
        return PutResult(Outcome.PRESENT, key, str(dest), size, sha256)
