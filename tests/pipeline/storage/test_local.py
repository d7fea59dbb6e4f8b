"""pipeline.storage.local: a directory as an object store (conditional, verified, never overwriting)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import EXIT_CANTCREAT, StorageConflict, StorageError
from pipeline.hashing import sha256_file
from pipeline.storage.base import Outcome
from pipeline.storage.files import partial_path
from pipeline.storage.local import LocalStore, remove_stale_partials
from pipeline.storage.location import LocalLocation


def test_put_get_read_back(tmp_path: Path) -> None:
    store = LocalStore(LocalLocation(tmp_path / "store"))
    store.check()
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip bytes")
    sha256 = sha256_file(source)
    key = store.location.key("runs", "r1", "seg-000.mp4")

    assert store.read_back(key) is None
    assert store.get(key, tmp_path / "out.mp4", sha256) is False
    stored = store.put(key, source, sha256)
    assert (stored.outcome, stored.uri, stored.size) == (Outcome.UPLOADED, str(tmp_path / "store" / key), 10)
    assert store.put(key, source, sha256).outcome is Outcome.PRESENT
    assert store.read_back(key) == (10, sha256)
    assert store.get(key, tmp_path / "back" / "out.mp4", sha256) is True
    assert (tmp_path / "back" / "out.mp4").read_bytes() == b"clip bytes"
    with pytest.raises(StorageError, match="source changed"):
        store.get(key, tmp_path / "other.mp4", "0" * 64)
    assert not (tmp_path / "other.mp4").exists()


def test_a_different_file_is_never_overwritten(tmp_path: Path) -> None:
    store = LocalStore(LocalLocation(tmp_path / "store"))
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    store.put("k", first, sha256_file(first))

    with pytest.raises(StorageConflict, match=f"local copy is kept at {second}") as caught:
        store.put("k", second, sha256_file(second))

    assert caught.value.exit_code == EXIT_CANTCREAT
    assert (tmp_path / "store" / "k").read_bytes() == b"first"


def test_check_refuses_a_file_where_the_directory_should_be(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("a file")
    with pytest.raises(StorageError):
        LocalStore(LocalLocation(tmp_path / "store" / "sub")).check()
    with pytest.raises(StorageError, match="creating the store directory"):
        LocalStore(LocalLocation(tmp_path / "store")).check()


def test_only_partials_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dest = tmp_path / "master.mp4"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".master.mp4.{int(dead.stdout)}.partial"
    live = tmp_path / f".master.mp4.{os.getppid()}.partial"
    other = tmp_path / ".other.mp4.1.partial"
    for path in (stale, live, other, partial_path(dest)):
        path.write_text("{")

    assert remove_stale_partials(dest) == [stale]
    assert live.exists() and other.exists() and partial_path(dest).exists()
