"""Provider limits on a Prefect server: runs starting together all get them (no 409 race)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prefect.exceptions import ObjectAlreadyExists

import flows.limits
from flows.limits import ensure_limits, limit_names
from pipeline.render.settings import RunSettings


class RacingClient:
    """A client whose first create of each limit loses the race to another run's create."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float | None]] = []
        self.lost: set[str] = set()

    async def upsert_global_concurrency_limit_by_name(
        self, name: str, limit: int, slot_decay_per_second: float | None = None
    ) -> None:
        self.calls.append((name, limit, slot_decay_per_second))
        if name not in self.lost:
            self.lost.add(name)
            raise ObjectAlreadyExists(http_exc=Exception("409 Conflict"))


def test_a_limit_created_by_another_run_meanwhile_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    client = RacingClient()

    @contextlib.asynccontextmanager
    async def get_client() -> AsyncIterator[Any]:
        yield client

    monkeypatch.setattr(flows.limits, "get_client", get_client)
    settings = RunSettings(max_in_flight=6, submit_rate_per_s=3.0, submit_burst=3)
    names = asyncio.run(ensure_limits("sandbox", settings))
    in_flight, submits = limit_names("sandbox")
    assert names == (in_flight, submits)
    # Each limit: the create that lost, then the upsert that found it (and set our values).
    assert client.calls == [(in_flight, 6, None)] * 2 + [(submits, 3, 3.0)] * 2
