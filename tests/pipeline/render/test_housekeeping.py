"""Pruning the clip library: old, unused files go, records stay marked gone; used or recent stay."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.hashing import sha256_file
from pipeline.render import housekeeping
from pipeline.render.housekeeping import clips_in_masters, parse_age, prune, saved_line
from pipeline.store.library import ClipLibrary

DAY = 86400.0


def test_ages_are_hours_days_or_weeks() -> None:
    assert parse_age("30d") == 30 * DAY
    assert parse_age("12h") == 12 * 3600
    assert parse_age("2w") == 14 * DAY
    for bad in ("30", "d", "-1d", "1y", "thirty days"):
        with pytest.raises(InputError, match="--older-than"):
            parse_age(bad)


def _clip(library: ClipLibrary, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "runs" / "r1" / "clips" / f"{name}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(name.encode() * 100)
    library.record(
        name,
        provider="sandbox",
        body={"model_id": "m"},
        file=str(path),
        sha256=sha256_file(path),
        size=path.stat().st_size,
        request_id=f"req-{name}",
        cost=Decimal("0.84"),
        run_id="r1",
    )
    return path


def test_prune_removes_only_old_clips_no_master_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = ClipLibrary.open(f"sqlite:///{tmp_path / 'library.db'}")
    try:
        old, used, recent = (_clip(library, tmp_path, n) for n in ("old", "used", "recent"))
        monkeypatch.setattr(housekeeping, "clips_in_masters", lambda _runs: {sha256_file(used)})
        later = library.find("recent")
        assert later is not None
        # "old" and "used" were last used 31 days before `now`; "recent" one day before.
        pruned = prune(library, tmp_path / "runs", 30 * DAY, now=later.used_at + DAY)
        assert pruned.clips == 0  # nothing is 30 days old yet
        pruned = prune(library, tmp_path / "runs", 30 * DAY, now=later.used_at + 31 * DAY)
        assert (pruned.clips, pruned.kept_in_use) == (3 - 1, 1)
        assert not old.exists() and not recent.exists() and used.exists()
        assert [c.identity for c in library.all_clips() if c.gone] == ["old", "recent"]
        assert library.find("old") is None  # never reused again: bought anew
        assert library.stats().clips == 3  # the records stay
    finally:
        library.close()


def test_a_runs_dir_without_masters_uses_no_clip(tmp_path: Path) -> None:
    assert clips_in_masters(tmp_path / "none") == set()
    assert saved_line(Decimal("12.5"), 3) == "$12.50 of requests reused (3 reuses)"
