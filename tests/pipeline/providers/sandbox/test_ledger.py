"""The billing ledger: durable JSON lines folded into one entry per request."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.providers.sandbox.ledger import Ledger, fold

ACCEPTED: dict[str, Any] = {
    "model_id": "kling/kling-3.0/standard/text-to-video",
    "fingerprint": "abcd1234",
    "prompt": "a kite",
    "duration": 5,
    "generate_audio": False,
    "cost_usd": "0.42",
}


def test_events_are_appended_as_json_lines_and_survive_a_new_ledger(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.record("accepted", "r1", **ACCEPTED)
    ledger.record("charged", "r1", cost_usd="0.42")

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["accepted", "charged"]
    # A second ledger on the same file (a restarted server) reads and extends the record.
    again = Ledger(path)
    again.record("accepted", "r2", **ACCEPTED)
    assert [e["request_id"] for e in again.events()] == ["r1", "r1", "r2"]


def test_entries_fold_charges_failures_and_cancellations(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    for rid in ("done", "failed", "cancelled", "pending"):
        ledger.record("accepted", rid, **ACCEPTED)
    ledger.record("charged", "done", cost_usd="0.42")
    ledger.record("failed", "failed", error="boom")
    ledger.record("cancelled", "cancelled")

    entries = {e.request_id: e for e in ledger.entries()}

    assert [e.request_id for e in ledger.entries()] == ["done", "failed", "cancelled", "pending"]
    assert entries["done"].status == "completed" and entries["done"].charged
    assert entries["done"].charge_count == 1 and entries["done"].charged_at is not None
    assert entries["done"].cost_usd == Decimal("0.42")
    for rid in ("failed", "cancelled"):
        assert entries[rid].status == rid and not entries[rid].charged and entries[rid].charge_count == 0
    assert entries["pending"].status == "accepted" and entries["pending"].charged_at is None


def test_fold_counts_a_double_charge_and_ignores_events_of_unknown_requests() -> None:
    events: list[dict[str, Any]] = [
        {"event": "charged", "request_id": "ghost", "at": 1.0},
        {"event": "accepted", "request_id": "r", "at": 2.0, **ACCEPTED},
        {"event": "charged", "request_id": "r", "at": 3.0},
        {"event": "charged", "request_id": "r", "at": 4.0},
    ]

    [entry] = fold(events)

    assert entry.request_id == "r"
    assert entry.charge_count == 2  # what a test uses to prove nothing was charged twice
    assert entry.accepted_at == 2.0 and entry.charged_at == 4.0
    assert entry.prompt == "a kite" and entry.duration == 5 and entry.generate_audio is False


def test_the_dialect_is_kept_and_old_files_read_as_runcomfy(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.record("accepted", "old", **ACCEPTED)
    ledger.record("accepted", "new", **ACCEPTED, dialect="fal")
    assert [(e.request_id, e.dialect) for e in ledger.entries()] == [("old", "runcomfy"), ("new", "fal")]
