"""The store's schema helpers: job identity, money at the column boundary, SQLite pragmas."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.store.schema import MICRO, from_micro, job_key, sqlite_pragmas, to_micro

BODY = {"prompt": "a fox", "image_sha256": "ab" * 32, "duration": 5}


def _key(**changes: object) -> str:
    args: dict[str, object] = {
        "run_id": "r1",
        "narrative": "n",
        "variant": "v",
        "pass_": "draft",
        "segment": 0,
        "body": BODY,
    }
    args.update(changes)
    return job_key(**args)  # type: ignore[arg-type]


def test_job_key_is_stable_and_ignores_key_order() -> None:
    reordered = dict(reversed(list(BODY.items())))
    assert _key() == _key(body=reordered)
    assert len(_key()) == 64
    int(_key(), 16)  # a hex sha256


@pytest.mark.parametrize(
    "change",
    [
        {"run_id": "r2"},
        {"narrative": "m"},
        {"variant": "w"},
        {"pass_": "final"},
        {"segment": 1},
        {"body": {**BODY, "prompt": "a fox."}},
    ],
)
def test_job_key_changes_with_every_part_of_the_identity(change: dict[str, object]) -> None:
    assert _key(**change) != _key()


def test_micro_usd_round_trips_every_whole_mill_exactly() -> None:
    for mills in (1, 7, 84, 999, 1_000_000_000):
        amount = Decimal(mills) / 1000
        micro = to_micro(amount)
        assert micro == mills * 1000
        assert isinstance(micro, int)
        assert from_micro(micro) == amount
    assert to_micro(Decimal("0.084")) == 84_000
    assert from_micro(1) == Decimal(1) / MICRO


def test_sqlite_pragmas_put_a_new_database_in_wal_with_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "jobs.db")
    try:
        sqlite_pragmas(conn, None)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        conn.close()
