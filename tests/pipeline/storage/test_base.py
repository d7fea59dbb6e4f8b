"""pipeline.storage.base: what every store shares (content types, errors naming the local copy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import DiskFull, StorageConflict
from pipeline.storage.base import content_type, kept


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("master.mp4", "video/mp4"),
        ("MASTER.MP4", "video/mp4"),
        ("master.srt", "application/x-subrip"),
        ("contact-sheet.png", "image/png"),
        ("deck.JPEG", "image/jpeg"),
        ("manifest.json", "application/json"),
        ("notes.txt", "application/octet-stream"),
        ("no-suffix", "application/octet-stream"),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(name) == expected


def test_kept_names_the_local_copy_and_keeps_the_class() -> None:
    for error in (StorageConflict("s3://b/k: refused"), DiskFull("writing x: no space left")):
        with_path = kept(error, Path("/runs/r1/master.mp4"))
        assert type(with_path) is type(error)
        assert with_path.exit_code == error.exit_code
        assert str(with_path) == f"{error}; the local copy is kept at /runs/r1/master.mp4"
