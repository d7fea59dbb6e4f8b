"""The SQL store applies the transition table: random sequences of store calls leave every job in
the state the table names (unchanged where it refuses), and the ledger within its limit."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import StaticPool

from pipeline.errors import JobBusy
from pipeline.store.jobs import JobStatus, SqlJobStore
from pipeline.store.transitions import Event, allows, step

COST = Decimal("0.84")
LIMIT = Decimal("2.00")  # two requests at a time

#: Store call → the event it stands for (given the job's state).
CALLS: dict[str, Callable[[JobStatus], Event]] = {
    "begin_submit": lambda s: Event.RESERVE,
    "resubmit": lambda s: Event.RESUBMIT if s is JobStatus.UNKNOWN else Event.RESERVE,
    "not_sent": lambda s: Event.NOT_SENT,
    "submitted": lambda s: Event.ACCEPTED,
    "charged": lambda s: Event.COMPLETED_RESULT,
    "completed": lambda s: Event.DOWNLOADED,
    "failed": lambda s: Event.FAILED if s is JobStatus.SUBMITTED else Event.REJECTED,
    "cancelled": lambda s: Event.CANCELLED,
    "unknown": lambda s: Event.ANSWER_LOST,
    "write_off": lambda s: Event.WRITE_OFF,
}


def call(store: SqlJobStore, key: str, name: str, serial: int) -> None:
    """Make the store call ``name``; refusals are the store's to signal (JobBusy or no change)."""
    try:
        if name in ("begin_submit", "resubmit"):
            store.begin_submit(key, COST, replace_unknown=name == "resubmit")
        elif name == "not_sent":
            store.mark_not_sent(key, "429")
        elif name == "submitted":
            store.mark_submitted(key, f"req-{serial}")
        elif name == "charged":
            store.mark_charged(key, store.get(key).request_id or "none", COST)
        elif name == "completed":
            store.mark_completed(key, file="/c.mp4", sha256="ab" * 32, size=1, cost=COST)
        elif name == "failed":
            store.mark_ended(key, JobStatus.FAILED, error="x")
        elif name == "cancelled":
            store.mark_ended(key, JobStatus.CANCELLED, error="x")
        elif name == "unknown":
            store.mark_unknown(key, "lost")
        else:
            store.release_unknown(key)
    except JobBusy:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(sorted(CALLS))), max_size=40))
def test_store_calls_follow_the_table(sequence: list[tuple[int, str]]) -> None:
    # One in-memory SQLite database per example (one connection, shared): the SQL is the same.
    store = SqlJobStore(sa.create_engine("sqlite://", poolclass=StaticPool))
    try:
        store.ensure_run("r1", script="s", limit=LIMIT)
        keys = [
            store.upsert_job(
                run_id="r1", narrative="n", variant="a", pass_="draft", segment=i, body={"i": i}
            ).key
            for i in range(3)
        ]
        for serial, (index, name) in enumerate(sequence):
            key = keys[index]
            before = store.get(key).status
            committed = store.spend("r1").committed
            call(store, key, name, serial)
            after = store.get(key).status
            event = CALLS[name](before)
            if after != before or allows(before, event):
                budget_refused = event in (Event.RESERVE, Event.RESUBMIT) and committed + COST > LIMIT
                expected = before if budget_refused else step(before, event).state
                assert after == expected, (name, before, event)
            spend = store.spend("r1")
            assert spend.committed <= spend.limit
            assert spend.reserved >= 0
        # A job holds money exactly while something of it may be out at the provider.
        for job in store.jobs_of("r1"):
            holding = job.status in (JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.UNKNOWN)
            assert (job.reserved > 0) is holding
    finally:
        store.close()
