"""The sandbox's billing ledger: every accepted request, its cost, and whether it was charged.

Events are appended to a JSON-lines file (the durable record); :func:`fold` turns them into one
entry per request. ``charge_count`` exists so that a test can prove no request was charged
twice; each entry also carries the prompt, so a test can prove no *job* was paid twice.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

EventKind = Literal["accepted", "charged", "failed", "cancelled"]


class LedgerEntry(BaseModel):
    """One request as billing sees it."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    model_id: str
    fingerprint: str
    prompt: str
    duration: int
    generate_audio: bool
    cost_usd: Decimal
    status: str
    charged: bool
    charge_count: int
    accepted_at: float
    charged_at: float | None = None
    #: The API dialect that accepted the request (``runcomfy``, ``fal``, ``kling``): its prices.
    dialect: str = "runcomfy"


class Ledger:
    """Append-only JSON-lines ledger, safe to write from the server's threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        self._lock = threading.Lock()

    def record(self, kind: EventKind, request_id: str, **fields: Any) -> None:
        """Append one event."""
        event = {"event": kind, "request_id": request_id, "at": time.time(), **fields}
        line = json.dumps(event, default=str, sort_keys=True)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def events(self) -> list[dict[str, Any]]:
        """All events, oldest first."""
        with self._lock:
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def entries(self) -> list[LedgerEntry]:
        """One entry per accepted request, in acceptance order."""
        return fold(self.events())


def fold(events: list[dict[str, Any]]) -> list[LedgerEntry]:
    """Fold ledger events into entries (``charged`` iff at least one charge event)."""
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        rid = event["request_id"]
        kind = event["event"]
        if kind == "accepted":
            rows[rid] = {
                "request_id": rid,
                "model_id": event["model_id"],
                "fingerprint": event["fingerprint"],
                "prompt": event["prompt"],
                "duration": event["duration"],
                "generate_audio": event["generate_audio"],
                "cost_usd": Decimal(str(event["cost_usd"])),
                "status": "accepted",
                "charged": False,
                "charge_count": 0,
                "accepted_at": event["at"],
                "dialect": event.get("dialect", "runcomfy"),
            }
        elif rid in rows:
            row = rows[rid]
            if kind == "charged":
                row["charge_count"] += 1
                row["charged"] = True
                row["charged_at"] = event["at"]
                row["status"] = "completed"
            else:
                row["status"] = kind
    return [LedgerEntry.model_validate(row) for row in rows.values()]
