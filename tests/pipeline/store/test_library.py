"""The clip library's table, on SQLite and PostgreSQL: first payer kept, pruned clips never found,
reuses counted once per run, and what it saved."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.store.library import LIBRARY_FILE, ClipLibrary, library_url


@pytest.fixture
def library(store_url: str) -> Iterator[ClipLibrary]:
    opened = ClipLibrary.open(store_url)
    yield opened
    opened.close()


def _record(library: ClipLibrary, identity: str, run_id: str, cost: str = "0.84") -> None:
    library.record(
        identity,
        provider="sandbox",
        body={"model_id": "kling/standard", "prompt": identity},
        file=f"/runs/{run_id}/clips/{identity}.mp4",
        sha256="ab" * 32,
        size=1000,
        request_id=f"req-{identity}-{run_id}",
        cost=Decimal(cost),
        run_id=run_id,
    )


def test_the_default_library_lives_beside_the_runs_and_a_shared_store_holds_it(tmp_path: Path) -> None:
    assert library_url(tmp_path / "runs", None) == f"sqlite:///{tmp_path / 'runs' / LIBRARY_FILE}"
    assert library_url(tmp_path / "runs", "postgresql+psycopg://db/k") == "postgresql+psycopg://db/k"


def test_the_first_payer_is_kept(library: ClipLibrary) -> None:
    _record(library, "x", "r1")
    _record(library, "x", "r2")  # another worker recorded the same identity too
    found = library.find("x")
    assert found is not None
    assert (found.run_id, found.cost, found.model_id) == ("r1", Decimal("0.84"), "kling/standard")
    assert found.body == {"model_id": "kling/standard", "prompt": "x"}
    assert library.find("y") is None
    assert library.known(["x", "y"]) == {"x"}


def test_a_pruned_clip_stays_recorded_and_is_never_reused_until_bought_again(library: ClipLibrary) -> None:
    _record(library, "x", "r1")
    library.mark_gone("x")
    assert library.find("x") is None
    assert library.known(["x"]) == set()
    assert [c.gone for c in library.all_clips()] == [True]
    _record(library, "x", "r3")  # bought again: the record gets the new file
    found = library.find("x")
    assert found is not None and found.run_id == "r3"


def test_what_the_library_saved_counts_each_run_once_and_never_the_payer(library: ClipLibrary) -> None:
    _record(library, "x", "r1", "0.84")
    _record(library, "y", "r1", "1.008")
    library.note_use("x", "r1")  # the payer resuming: saved nothing
    library.note_use("x", "r2")
    library.note_use("x", "r2")  # r2 resumed: still one reuse
    library.note_use("y", "r3")
    stats = library.stats()
    assert (stats.clips, stats.gone, stats.size_bytes) == (2, 0, 2000)
    assert stats.paid == Decimal("1.848")
    assert (stats.reuses, stats.saved) == (2, Decimal("1.848"))
