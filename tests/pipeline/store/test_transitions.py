"""The job's transition table: every (state, event) pair allowed or refused as written here, and
money that never passes the limit nor is charged twice, whatever the order of events."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.store.transitions import (
    ABSORBING,
    BUYABLE,
    TRANSITIONS,
    Effect,
    Event,
    JobStatus,
    Step,
    TransitionRefused,
    allows,
    step,
)

S, E, F = JobStatus, Event, Effect

#: The table as the specification states it (independently of how the module builds it).
EXPECTED: dict[tuple[JobStatus, Event], tuple[JobStatus, Effect]] = {
    (S.PLANNED, E.RESERVE): (S.SUBMITTING, F.RESERVE),
    (S.FAILED, E.RESERVE): (S.SUBMITTING, F.RESERVE),
    (S.CANCELLED, E.RESERVE): (S.SUBMITTING, F.RESERVE),
    (S.PLANNED, E.REJECTED): (S.FAILED, F.RELEASE),
    (S.FAILED, E.REJECTED): (S.FAILED, F.RELEASE),
    (S.CANCELLED, E.REJECTED): (S.FAILED, F.RELEASE),
    (S.UNKNOWN, E.RESUBMIT): (S.SUBMITTING, F.WRITE_OFF_AND_RESERVE),
    (S.UNKNOWN, E.WRITE_OFF): (S.PLANNED, F.WRITE_OFF),
    (S.SUBMITTING, E.NOT_SENT): (S.PLANNED, F.RELEASE),
    (S.SUBMITTING, E.REJECTED): (S.FAILED, F.RELEASE),
    (S.SUBMITTING, E.ACCEPTED): (S.SUBMITTED, F.KEEP),
    (S.SUBMITTING, E.ANSWER_LOST): (S.UNKNOWN, F.KEEP),
    (S.SUBMITTED, E.COMPLETED_RESULT): (S.CHARGED, F.CHARGE),
    (S.SUBMITTED, E.DOWNLOADED): (S.COMPLETED, F.CHARGE),
    (S.SUBMITTED, E.FAILED): (S.FAILED, F.RELEASE),
    (S.SUBMITTED, E.CANCELLED): (S.CANCELLED, F.RELEASE),
    (S.SUBMITTED, E.TIMED_OUT): (S.SUBMITTED, F.KEEP),
    (S.CHARGED, E.DOWNLOADED): (S.COMPLETED, F.KEEP),
    (S.CHARGED, E.DOWNLOAD_FAILED): (S.CHARGED, F.KEEP),
}

PAIRS = list(itertools.product(JobStatus, Event))


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s.value}-{e.value}" for s, e in PAIRS])
def test_every_state_and_event_is_allowed_or_refused_as_specified(state: JobStatus, event: Event) -> None:
    expected = EXPECTED.get((state, event))
    assert allows(state, event) is (expected is not None)
    if expected is None:
        with pytest.raises(TransitionRefused, match=f"{state.value} job cannot take event {event.value}"):
            step(state, event)
    else:
        assert step(state, event) == Step(*expected)


def test_the_table_is_exactly_the_specification() -> None:
    assert {k: (v.state, v.effect) for k, v in TRANSITIONS.items()} == EXPECTED


def test_money_rules_of_the_table() -> None:
    # Only a job with nothing out at the provider is bought (and only those reserve).
    assert {s for s in JobStatus if allows(s, E.RESERVE)} == BUYABLE
    assert {k for k, v in TRANSITIONS.items() if v.effect is F.RESERVE} == {(s, E.RESERVE) for s in BUYABLE}
    # A charged or completed job is never bought again, nor charged again.
    for state in (S.CHARGED, S.COMPLETED):
        for event in (E.RESERVE, E.RESUBMIT, E.COMPLETED_RESULT):
            assert not allows(state, event)
    # An unknown job keeps its reservation until the user's opt-in writes it off.
    assert {e for (s, e) in TRANSITIONS if s is S.UNKNOWN} == {E.RESUBMIT, E.WRITE_OFF}
    assert all(v.effect is F.KEEP for (s, e), v in TRANSITIONS.items() if v.state is S.UNKNOWN)
    # A completed job has nothing left to happen to it.
    assert {S.COMPLETED} == ABSORBING


# --- random sequences of events over a ledger -----------------------------------------------------


@dataclass
class Ledger:
    """The run's money as the table's effects move it (the SQL store's rules in miniature)."""

    limit: Decimal
    reserved: dict[int, Decimal] = field(default_factory=dict)  # per job
    charged: Decimal = Decimal(0)
    charges: dict[tuple[int, int], int] = field(default_factory=dict)  # (job, attempt) → times

    @property
    def committed(self) -> Decimal:
        return self.charged + sum(self.reserved.values(), Decimal(0))

    def charge(self, job: int, attempt: int) -> None:
        self.charged += self.reserved.pop(job, Decimal(0))
        self.charges[(job, attempt)] = self.charges.get((job, attempt), 0) + 1


@dataclass
class Job:
    state: JobStatus = S.PLANNED
    attempt: int = 0


def apply(ledger: Ledger, jobs: list[Job], index: int, event: Event, cost: Decimal) -> None:
    """Apply one event as the store does: refused pairs and refused reservations change nothing."""
    job = jobs[index]
    if not allows(job.state, event):
        return
    move = step(job.state, event)
    if move.effect in (F.RESERVE, F.WRITE_OFF_AND_RESERVE):
        # Writing off moves reserved to charged: the committed total is unchanged by it.
        if ledger.committed + cost > ledger.limit:
            return
        if move.effect is F.WRITE_OFF_AND_RESERVE:
            ledger.charge(index, job.attempt)
        job.attempt += 1
        ledger.reserved[index] = cost
    elif move.effect in (F.CHARGE, F.WRITE_OFF):
        ledger.charge(index, job.attempt)
    elif move.effect is F.RELEASE:
        ledger.reserved.pop(index, None)
    job.state = move.state


events = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(list(Event)),
        st.sampled_from([Decimal("0.42"), Decimal("0.84"), Decimal("1.68")]),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(limit=st.sampled_from([Decimal("1.00"), Decimal("2.52"), Decimal("5")]), sequence=events)
def test_random_event_sequences_keep_the_money_safe(
    limit: Decimal, sequence: list[tuple[int, Event, Decimal]]
) -> None:
    ledger = Ledger(limit)
    jobs = [Job() for _ in range(4)]
    for index, event, cost in sequence:
        before = jobs[index].state
        apply(ledger, jobs, index, event, cost)
        assert ledger.committed <= ledger.limit  # never over the limit
        assert all(times == 1 for times in ledger.charges.values())  # a request charged once
        if before in ABSORBING:
            assert jobs[index].state is before  # completed stays completed
        if before is S.CHARGED:
            assert jobs[index].state in (S.CHARGED, S.COMPLETED)  # charged is never bought again
    # A job holds a reservation exactly while something of it may be out at the provider.
    for index, job in enumerate(jobs):
        holding = job.state in (S.SUBMITTING, S.SUBMITTED, S.UNKNOWN)
        assert (index in ledger.reserved) is holding
