"""The book of takes: written whole or not at all, and a master take's files kept byte for byte."""

from __future__ import annotations

from pathlib import Path

from pipeline.render.layout import RunLayout
from pipeline.render.takebook import (
    SNAPSHOTS,
    TAKES_FILE,
    has_takes,
    list_takes,
    load_book,
    restore,
    save_book,
    snapshot,
)


def test_a_run_never_rerolled_has_an_empty_book(tmp_path: Path) -> None:
    assert load_book(tmp_path) == {"masters": {}}
    assert list_takes(tmp_path) == []
    assert not has_takes(RunLayout(tmp_path), "n", "a", "draft")


def test_the_book_is_replaced_whole(tmp_path: Path) -> None:
    book = {"masters": {"n/a/draft": {"segments": [[{"take": 1, "seed": 3, "request_id": "r",
            "cost_usd": "0.84", "sha256": "ab", "file": "x"}]], "current": [1], "masters": [[1]]}}}  # fmt: skip
    save_book(tmp_path, book)
    assert load_book(tmp_path) == book
    assert [p.name for p in tmp_path.iterdir()] == [TAKES_FILE]  # no partial file left behind
    assert has_takes(RunLayout(tmp_path), "n", "a", "draft")
    (row,) = list_takes(tmp_path)
    assert (row.ref.segment, row.take, row.seed, str(row.cost), row.current) == (0, 1, 3, "0.84", True)


def test_a_master_take_comes_back_byte_for_byte(tmp_path: Path) -> None:
    pass_dir = tmp_path / "draft"
    pass_dir.mkdir()
    (pass_dir / "master.mp4").write_bytes(b"take one")
    (pass_dir / "manifest.json").write_text("{}")
    snapshot(pass_dir, 1)
    (pass_dir / "master.mp4").write_bytes(b"take two")
    (pass_dir / "contact-sheet.png").write_bytes(b"only in take two")
    snapshot(pass_dir, 2)
    snapshot(pass_dir, 1)  # kept once: never overwritten by what is there now
    restore(pass_dir, 1)
    assert (pass_dir / "master.mp4").read_bytes() == b"take one"
    assert not (pass_dir / "contact-sheet.png").exists()
    assert sorted(p.name for p in (pass_dir / SNAPSHOTS).iterdir()) == ["take-1", "take-2"]
    restore(pass_dir, 2)
    assert (pass_dir / "contact-sheet.png").read_bytes() == b"only in take two"
