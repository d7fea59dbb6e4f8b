"""A job's life as data: for each (state, event) the next state and what happens to the money.

This table is the one place the job's states and transitions are written. The SQL store
(:mod:`pipeline.store.jobs`) asks it before every write, and the engine
(:mod:`pipeline.render.engine`) maps each outcome of a step to an :class:`Event` and reads the
job's new state from it. A pair absent from the table is refused::

    planned/failed/cancelled ──reserve──► submitting ──accepted──► submitted ──completed_result──► charged
                                  │  ├─not_sent─► planned (release)   │  ├─failed/cancelled─► (release)
                                  │  ├─rejected─► failed (release)    │  └─timed_out─► submitted (keep)
                                  │  └─answer_lost─► unknown (keep)   └─downloaded─► completed (charge)
    unknown ──resubmit──► submitting (its reservation counted as charged, a new one reserved)
    unknown ──write_off──► planned (its reservation counted as charged)
    charged ──downloaded──► completed;  charged ──download_failed──► charged (never bought again)
    completed: nothing moves it (a lost clip is fetched again from its paid request)

Money effects (:class:`Effect`) act on the run's ledger: ``reserve`` the planned cost (refused
when it would take the run over its limit), ``charge`` the reservation (what the provider billed
replaces it), ``release`` it (nothing was billed), ``keep`` it as it is (the request may be
billed), or ``write_off`` an unknown request (its reservation counted as charged) before a new
reservation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class JobStatus(StrEnum):
    """Where a job stands; written before the step it names is attempted."""

    PLANNED = "planned"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    #: The provider finished and billed the request; its clip is not downloaded (verified) yet.
    CHARGED = "charged"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


class Event(StrEnum):
    """What happened to a job: the outcome of one step, as the engine or the store saw it."""

    #: Its cost is reserved on the run and the paid request is about to be sent.
    RESERVE = "reserve"
    #: The user's opt-in (``--resubmit-unknown``): buy an unknown job again.
    RESUBMIT = "resubmit"
    #: An unknown job's possible bill is accepted as spent; the job may be planned again.
    WRITE_OFF = "write_off"
    #: The request was certainly not created (a 429): nothing billed.
    NOT_SENT = "not_sent"
    #: The provider refused the request (4xx, bad token, no balance): nothing created.
    REJECTED = "rejected"
    #: The provider accepted the request and gave its id.
    ACCEPTED = "accepted"
    #: The submit's answer was lost (or the process died while submitting): it may exist.
    ANSWER_LOST = "answer_lost"
    #: A result answer says the request completed: the provider billed it.
    COMPLETED_RESULT = "completed_result"
    #: The clip is on disk and verified.
    DOWNLOADED = "downloaded"
    #: The billed clip did not arrive (refused, truncated, invalid): fetched again on a rerun.
    DOWNLOAD_FAILED = "download_failed"
    #: The provider failed the generation: not billed.
    FAILED = "failed"
    #: The request was cancelled (while queued): not billed.
    CANCELLED = "cancelled"
    #: We stopped waiting (or could not read how it ended): it stays followed.
    TIMED_OUT = "timed_out"


class Effect(StrEnum):
    """What a transition does to the run's ledger."""

    RESERVE = "reserve"
    CHARGE = "charge"
    RELEASE = "release"
    KEEP = "keep"
    #: The old reservation counted as charged, then a new one reserved (refusable like reserve).
    WRITE_OFF_AND_RESERVE = "write_off_and_reserve"
    #: The old reservation counted as charged.
    WRITE_OFF = "write_off"


@dataclass(frozen=True)
class Step:
    """An allowed transition: the job's next state and the ledger effect."""

    state: JobStatus
    effect: Effect


S = JobStatus
E = Event

#: Nothing of these is out at the provider: they may be bought (again).
BUYABLE: Final = frozenset({S.PLANNED, S.FAILED, S.CANCELLED})

_TABLE: dict[tuple[JobStatus, Event], Step] = {
    **{(s, E.RESERVE): Step(S.SUBMITTING, Effect.RESERVE) for s in BUYABLE},
    # Refused before a reservation was made (an upload, say): nothing to release, marked failed.
    **{(s, E.REJECTED): Step(S.FAILED, Effect.RELEASE) for s in BUYABLE},
    (S.UNKNOWN, E.RESUBMIT): Step(S.SUBMITTING, Effect.WRITE_OFF_AND_RESERVE),
    (S.UNKNOWN, E.WRITE_OFF): Step(S.PLANNED, Effect.WRITE_OFF),
    (S.SUBMITTING, E.NOT_SENT): Step(S.PLANNED, Effect.RELEASE),
    (S.SUBMITTING, E.REJECTED): Step(S.FAILED, Effect.RELEASE),
    (S.SUBMITTING, E.ACCEPTED): Step(S.SUBMITTED, Effect.KEEP),
    (S.SUBMITTING, E.ANSWER_LOST): Step(S.UNKNOWN, Effect.KEEP),
    (S.SUBMITTED, E.COMPLETED_RESULT): Step(S.CHARGED, Effect.CHARGE),
    # A completion seen only with its clip (no charge recorded first): charged with it.
    (S.SUBMITTED, E.DOWNLOADED): Step(S.COMPLETED, Effect.CHARGE),
    (S.SUBMITTED, E.FAILED): Step(S.FAILED, Effect.RELEASE),
    (S.SUBMITTED, E.CANCELLED): Step(S.CANCELLED, Effect.RELEASE),
    (S.SUBMITTED, E.TIMED_OUT): Step(S.SUBMITTED, Effect.KEEP),
    (S.CHARGED, E.DOWNLOADED): Step(S.COMPLETED, Effect.KEEP),
    (S.CHARGED, E.DOWNLOAD_FAILED): Step(S.CHARGED, Effect.KEEP),
}

#: The table itself, read-only (for documentation and tests).
TRANSITIONS: Final = dict(_TABLE)

#: States no event leaves.
ABSORBING: Final = frozenset(s for s in JobStatus if not any(k[0] is s for k in _TABLE))
#: A job's request finished one way or the other (compatibility with earlier callers).
TERMINAL: Final = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})


class TransitionRefused(Exception):
    """``event`` is not allowed in ``state`` (an internal error: callers check :func:`allows`)."""

    def __init__(self, state: JobStatus, event: Event) -> None:
        super().__init__(f"a {state.value} job cannot take event {event.value}")
        self.state = state
        self.event = event


def step(state: JobStatus, event: Event) -> Step:
    """The transition for ``event`` in ``state``; raises TransitionRefused when there is none."""
    found = _TABLE.get((state, event))
    if found is None:
        raise TransitionRefused(state, event)
    return found


def allows(state: JobStatus, event: Event) -> bool:
    """Whether ``event`` may happen to a job in ``state``."""
    return (state, event) in _TABLE
