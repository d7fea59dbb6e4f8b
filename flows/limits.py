"""Provider limits through Prefect global concurrency limits, shared by every run on a server.

Created (or updated) when a run starts and used with ``strict=True``: a limit that does not
exist is an error, never a silent no-op. The local limits still apply inside the process (a
cheap first gate that spares the API server most of the waiting).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from prefect.client.orchestration import PrefectClient, get_client
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL, load_current_profile

from pipeline.cli.orchestration import EARLY_SERVER_ENV
from pipeline.render.limits import LocalLimits
from pipeline.render.settings import RunSettings

#: Seconds a crashed run's in-flight slot stays taken before the server frees it (leases are
#: renewed while the run lives). Short, so that resuming after a kill -9 does not stall long.
LEASE_S = 60.0


def server_configured() -> bool:
    """True when runs talk to a configured Prefect server, not a temporary ephemeral one.

    Inside a flow, PREFECT_API_URL also points at the temporary server of ephemeral mode, so
    the question is asked of the environment and the active profile instead.
    """
    url = os.environ.get("PREFECT_API_URL")
    if url and url == os.environ.get(EARLY_SERVER_ENV):
        return False  # klingflow run's own start of the temporary server (pipeline/cli/orchestration.py)
    return bool(url or load_current_profile().settings.get(PREFECT_API_URL))


def limit_names(provider: str) -> tuple[str, str]:
    """The names of the in-flight and submit-rate limits of a provider."""
    return f"klingflow-{provider}-in-flight", f"klingflow-{provider}-submits"


async def _upsert_limit(client: PrefectClient, name: str, limit: int, decay: float | None = None) -> None:
    """Create or update a global limit, also when another run creates it at the same moment.

    Prefect's upsert reads, then creates: two runs starting together on a fresh server both
    find nothing and one create fails with a 409. The second attempt finds the limit.
    """
    try:
        await client.upsert_global_concurrency_limit_by_name(name, limit, slot_decay_per_second=decay)
    except ObjectAlreadyExists:
        await client.upsert_global_concurrency_limit_by_name(name, limit, slot_decay_per_second=decay)


async def ensure_limits(provider: str, settings: RunSettings) -> tuple[str, str]:
    """Create or update the provider's two global limits from ``settings``; return their names."""
    in_flight, submits = limit_names(provider)
    async with get_client() as client:
        await _upsert_limit(client, in_flight, settings.max_in_flight)
        # A rate limit is a concurrency limit whose slots decay: `burst` slots, refilled at `rate`/s.
        await _upsert_limit(client, submits, settings.submit_burst, settings.submit_rate_per_s)
    return in_flight, submits


@contextlib.asynccontextmanager
async def run_lock(run_id: str) -> AsyncIterator[None]:
    """Hold run ``run_id`` exclusively across every worker of the server while rendering it.

    Two flow runs of one run id (a resume started while a stuck worker still lives, a schedule
    firing twice) would otherwise both submit its jobs. The lock is a one-slot global limit
    whose lease is renewed while the holder lives: a killed worker's lock frees itself within
    :data:`LEASE_S`, and the next holder resumes from the job store.
    """
    name = f"klingflow-run-{run_id}"
    async with get_client() as client:
        await _upsert_limit(client, name, 1)
    async with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_S):
        yield


class PrefectLimits:
    """The engine's :class:`~pipeline.render.limits.Limits` over Prefect global limits."""

    def __init__(self, local: LocalLimits, in_flight_name: str, submits_name: str) -> None:
        self.local = local
        self.in_flight_name = in_flight_name
        self.submits_name = submits_name

    @contextlib.asynccontextmanager
    async def in_flight(self) -> AsyncIterator[None]:
        async with (
            self.local.in_flight(),
            concurrency(self.in_flight_name, occupy=1, strict=True, lease_duration=LEASE_S),
        ):
            yield

    async def before_submit(self) -> None:
        await self.local.before_submit()
        await rate_limit(self.submits_name, occupy=1, strict=True)

    def slow_down(self, seconds: float) -> None:
        self.local.slow_down(seconds)
