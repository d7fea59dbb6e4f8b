"""The durable job store and spend ledger (SQLAlchemy Core: SQLite by default, any SQL URL).

One row per job, keyed by what determines its output; its state is written *before* each step
that could be lost, so that an interrupted run can be resumed without paying twice::

    planned ──► submitting ──► submitted(request_id) ──► charged(cost) ──► completed(file, sha256)
                    │                   ├──► failed / cancelled
                    └──► unknown        └──► (resume: polled again, never resubmitted)
    (a submit whose answer was lost: maybe billed; resubmitted only with an explicit opt-in)

``charged`` is the provider's point of view: it finished (and billed) the request, and the
charge is recorded before the clip is downloaded, so a download that fails — or a process killed
while downloading — still counts as money spent; a resume downloads the clip again from the
same request and never buys it again.

The spend ledger is one row per run holding its limit, the money *reserved* for requests in
flight and the money *charged*. ``reserve`` is a single conditional UPDATE
(``reserved + charged + amount <= limit``), atomic in every SQL database, so no interleaving of
concurrent submitters — threads, processes or machines sharing the database — can take a run's
spend over its limit. Money is ``Decimal`` USD everywhere in klingflow; integer micro-USD (prices
are whole mills) is only how these columns hold it, converted at this store's boundary
(:func:`~pipeline.store.schema.to_micro` on the way in, ``Spend``/``Job.reserved``/``Job.charged``
and :class:`RunSummary` in ``Decimal`` on the way out).

Every state change asks the transition table (:mod:`pipeline.store.transitions`) for the job's
next state and its ledger effect; a pair the table refuses writes nothing.

Several workers may share one store (``KLINGFLOW_STORE_URL``, e.g.
``postgresql+psycopg://user@host/klingflow``), so every write that depends on what it read takes
the lock first — ``SELECT … FOR UPDATE`` of the job row on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite — and a job's completion, say, is recorded (and charged) once however many workers report
it. Rows that may be created by several workers at once are inserted with ``ON CONFLICT DO
NOTHING``, and tables are created under a lock. On PostgreSQL transactions are READ COMMITTED
(a conditional UPDATE waits for a concurrent one and re-checks its condition), names sort
bytewise (``COLLATE "C"``) as on SQLite, and money and sizes are BIGINT.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import JobBusy
from pipeline.store.schema import (
    BUYABLE,
    MICRO,
    TERMINAL,
    Job,
    JobStatus,
    PaidRequest,
    RunSummary,
    Spend,
    create_tables,
    from_micro,
    insert_if_absent,
    job_key,
    jobs,
    open_engine,
    requests,
    runs,
    to_micro,
)
from pipeline.store.transitions import Effect, Event, allows, step

__all__ = [
    "BUYABLE",
    "MICRO",
    "TERMINAL",
    "Job",
    "JobStatus",
    "JobStore",
    "PaidRequest",
    "RunSummary",
    "Spend",
    "SqlJobStore",
    "from_micro",
    "job_key",
    "to_micro",
]


class SqlJobStore:
    """Jobs, paid requests and the spend ledger of runs, in one SQL database (implements
    :class:`pipeline.store.base.JobStore`; every state change asks the transition table).

    Example::

        store = SqlJobStore.open("sqlite:///runs/summer/jobs.db")
        store.ensure_run("summer-ab12", script="summer", limit=Decimal("40"))
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine)

    @classmethod
    def open(cls, url: str) -> SqlJobStore:
        """Open (creating tables if needed) the store at an SQLAlchemy URL.

        Example: ``SqlJobStore.open("postgresql+psycopg://klingflow@db.internal/klingflow")``.
        """
        engine = open_engine(url)
        try:
            return cls(engine)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def in_directory(cls, directory: Path) -> SqlJobStore:
        """The default store: SQLite in ``directory/jobs.db``."""
        return cls.open(f"sqlite:///{directory / 'jobs.db'}")

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the write lock at once (``BEGIN IMMEDIATE``), so
        that what it reads first cannot change before it writes; PostgreSQL locks the job row
        instead (``_job``)."""
        with self.engine.begin() as tx:
            if tx.dialect.name == "sqlite":
                tx.exec_driver_sql("BEGIN IMMEDIATE")
            yield tx

    # --- runs and money -----------------------------------------------------------------------

    def ensure_run(self, run_id: str, *, script: str, limit: Decimal) -> Spend:
        """Create the run's ledger row if it does not exist; return its spend.

        The limit of an existing run is kept: resuming never raises a cap that money was already
        committed under.
        """
        now = time.time()
        with self._tx() as tx:
            insert_if_absent(
                tx,
                runs,
                run_id=run_id,
                script=script,
                limit_micro=to_micro(limit),
                reserved_micro=0,
                charged_micro=0,
                status="running",
                created_at=now,
                updated_at=now,
            )
        return self.spend(run_id)

    def spend(self, run_id: str) -> Spend:
        """The run's limit, reserved and charged amounts."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).one()._mapping
        return Spend(
            from_micro(row["limit_micro"]),
            from_micro(row["reserved_micro"]),
            from_micro(row["charged_micro"]),
        )

    def set_run_status(self, run_id: str, status: str) -> None:
        """Record how the run stands (running, completed, incomplete, interrupted)."""
        with self._tx() as tx:
            tx.execute(
                runs.update().where(runs.c.run_id == run_id).values(status=status, updated_at=time.time())
            )

    def list_runs(self) -> list[RunSummary]:
        """Every run, newest first, with its money and job counts by status."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.created_at.desc())).all()
            counts = conn.execute(
                sa.select(jobs.c.run_id, jobs.c.status, sa.func.count()).group_by(
                    jobs.c.run_id, jobs.c.status
                )
            ).all()
        by_run: dict[str, dict[str, int]] = {}
        for run_id, status, count in counts:
            by_run.setdefault(run_id, {})[status] = count
        return [
            RunSummary(
                run_id=r.run_id,
                script=r.script,
                status=r.status,
                limit=from_micro(r.limit_micro),
                reserved=from_micro(r.reserved_micro),
                charged=from_micro(r.charged_micro),
                jobs=by_run.get(r.run_id, {}),
                created_at=r.created_at,
            )
            for r in rows
        ]

    def _reserve(self, tx: Connection, run_id: str, amount: int) -> bool:
        result = tx.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .where(runs.c.reserved_micro + runs.c.charged_micro + amount <= runs.c.limit_micro)
            .values(reserved_micro=runs.c.reserved_micro + amount, updated_at=time.time())
        )
        return result.rowcount == 1

    # --- jobs ---------------------------------------------------------------------------------

    def upsert_job(
        self, *, run_id: str, narrative: str, variant: str, pass_: str, segment: int, body: Mapping[str, Any]
    ) -> Job:
        """The job with this identity: created as ``planned`` if new, else the stored row."""
        key = job_key(run_id, narrative, variant, pass_, segment, body)
        now = time.time()
        with self._tx() as tx:
            insert_if_absent(
                tx,
                jobs,
                key=key,
                run_id=run_id,
                narrative=narrative,
                variant=variant,
                segment=segment,
                body=json.dumps(dict(body), sort_keys=True),
                status=JobStatus.PLANNED.value,
                attempts=0,
                reserved_micro=0,
                charged_micro=0,
                created_at=now,
                updated_at=now,
                **{"pass": pass_},
            )
            row = tx.execute(sa.select(jobs).where(jobs.c.key == key)).one()
        return Job.from_row(row)

    def get(self, key: str) -> Job:
        """The job ``key``."""
        with self.engine.connect() as conn:
            return Job.from_row(conn.execute(sa.select(jobs).where(jobs.c.key == key)).one())

    def jobs_of(self, run_id: str) -> list[Job]:
        """Every job of a run, in plan order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(jobs)
                .where(jobs.c.run_id == run_id)
                .order_by(jobs.c["pass"].desc(), jobs.c.narrative, jobs.c.variant, jobs.c.segment)
            ).all()
        return [Job.from_row(r) for r in rows]

    def jobs_at(self, run_id: str, narrative: str, variant: str, pass_: str, segment: int) -> list[Job]:
        """The jobs of one segment of a run (several when its request changed between attempts)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(jobs).where(
                    jobs.c.run_id == run_id,
                    jobs.c.narrative == narrative,
                    jobs.c.variant == variant,
                    jobs.c["pass"] == pass_,
                    jobs.c.segment == segment,
                )
            ).all()
        return [Job.from_row(r) for r in rows]

    def begin_submit(self, key: str, amount: Decimal, *, replace_unknown: bool = False) -> Job | None:
        """Reserve ``amount`` on the run and mark the job ``submitting`` — one transaction.

        Returns None (and changes nothing) when the reservation would take the run over its
        limit; raises JobBusy when the job may not be bought (the table refuses ``reserve``:
        another process submitted it since this one read it). Call it *before* sending the paid
        request.

        With ``replace_unknown`` an ``unknown`` job may be bought again (the user's explicit
        opt-in, event ``resubmit``): its lost request is counted as charged at its reserved
        amount (the safe side: it may be billed) in the same transaction, so a refusal leaves it
        ``unknown`` and intact.
        """
        micro = to_micro(amount)
        with self._tx() as tx:
            job = _job(tx, key)
            event = Event.RESUBMIT if replace_unknown and job.status == JobStatus.UNKNOWN else Event.RESERVE
            if not allows(job.status, event):
                raise JobBusy(key, job.status)
            move = step(job.status, event)
            if not self._reserve(tx, job.run_id, micro):
                return None
            charged = job.charged_micro
            if move.effect is Effect.WRITE_OFF_AND_RESERVE:
                # Reserved → charged leaves the run's committed total as it was.
                self._settle(tx, job, job.reserved_micro)
                self._set_request(tx, job, status=JobStatus.UNKNOWN, charged_micro=job.reserved_micro)
                charged += job.reserved_micro
            attempt = job.attempts + 1
            tx.execute(
                jobs.update()
                .where(jobs.c.key == key)
                .values(
                    status=move.state.value,
                    attempts=attempt,
                    request_id=None,
                    reserved_micro=micro,
                    charged_micro=charged,
                    error=None,
                    updated_at=time.time(),
                )
            )
            tx.execute(
                requests.insert().values(
                    job_key=key, attempt=attempt, status=move.state.value, created_at=time.time()
                )
            )
        return self.get(key)

    def mark_not_sent(self, key: str, error: str) -> None:
        """The paid request was certainly not created (refused before it was made, e.g. 429):
        release the reservation and put the job back to ``planned``."""
        with self._tx() as tx:
            self._move(tx, _job(tx, key), Event.NOT_SENT, request_status="not_sent", error=error)

    def mark_submitted(self, key: str, request_id: str) -> None:
        """The provider accepted the request: remember its id before polling.

        Raises JobBusy when the job is no longer ``submitting`` (another process moved it)."""
        with self._tx() as tx:
            job = _job(tx, key)
            if not allows(job.status, Event.ACCEPTED):
                raise JobBusy(key, job.status)
            self._move(tx, job, Event.ACCEPTED, request_id=request_id)

    def _settle(self, tx: Connection, job: Job, charged: int) -> None:
        """Move the job's reservation to charged (``charged`` may be 0: released)."""
        tx.execute(
            runs.update()
            .where(runs.c.run_id == job.run_id)
            .values(
                reserved_micro=runs.c.reserved_micro - job.reserved_micro,
                charged_micro=runs.c.charged_micro + charged,
                updated_at=time.time(),
            )
        )

    def _set_request(self, tx: Connection, job: Job, **values: Any) -> None:
        """Update the row of the job's current attempt (its paid request)."""
        values = {k: v.value if isinstance(v, JobStatus) else v for k, v in values.items()}
        tx.execute(
            requests.update()
            .where(requests.c.job_key == job.key, requests.c.attempt == job.attempts)
            .values(**values)
        )

    def _move(
        self,
        tx: Connection,
        job: Job,
        event: Event,
        *,
        cost: int = 0,
        request_status: str | None = None,
        **values: Any,
    ) -> bool:
        """Apply ``event`` to ``job`` as the transition table says: its next state and its money
        (``cost`` is what a ``charge`` effect charges). False, and nothing written, when the
        table refuses the event."""
        if not allows(job.status, event):
            return False
        move = step(job.status, event)
        charged = {Effect.CHARGE: cost, Effect.WRITE_OFF: job.reserved_micro}.get(move.effect, 0)
        row: dict[str, Any] = {"status": move.state.value, "updated_at": time.time(), **values}
        if move.effect is not Effect.KEEP:
            self._settle(tx, job, charged)
            row.update(reserved_micro=0, charged_micro=job.charged_micro + charged)
        tx.execute(jobs.update().where(jobs.c.key == job.key).values(**row))
        if move.effect is Effect.WRITE_OFF:
            return True  # the lost request's row keeps its last word
        # The requests row follows the attempt out at the provider; a job refused before it
        # reserved anything has no attempt of this try to record.
        if job.status in (JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.CHARGED):
            request: dict[str, Any] = {"status": request_status or move.state.value}
            if move.effect is not Effect.KEEP:
                request["charged_micro"] = charged
            if "request_id" in values:
                request["request_id"] = values["request_id"]
            self._set_request(tx, job, **request)
        return True

    def mark_charged(self, key: str, request_id: str, cost: Decimal) -> bool:
        """The provider finished request ``request_id`` and billed ``cost``: charge it now, before
        its clip is downloaded (see the module docstring). Only once however often it is
        reported; False (nothing changed) when it was already charged or the job has since moved
        on to another request."""
        with self._tx() as tx:
            job = _job(tx, key)
            if job.request_id != request_id:
                return False
            return self._move(tx, job, Event.COMPLETED_RESULT, cost=to_micro(cost), error=None)

    def mark_completed(self, key: str, *, file: str, sha256: str, size: int, cost: Decimal) -> None:
        """The clip is on disk and verified: charge its cost (unless already charged when the
        provider reported it finished), release the reservation. Idempotent; raises JobBusy when
        the job has no request whose clip this could be."""
        with self._tx() as tx:
            job = _job(tx, key)
            if job.status == JobStatus.COMPLETED:
                return
            done = self._move(
                tx,
                job,
                Event.DOWNLOADED,
                cost=to_micro(cost),
                file=file,
                sha256=sha256,
                size=size,
                error=None,
            )
            if not done:
                raise JobBusy(key, job.status)

    def mark_ended(self, key: str, status: JobStatus, *, error: str | None = None) -> None:
        """The job failed or was cancelled: release its reservation (nothing was billed).

        A submitted request that failed or was cancelled is event ``failed``/``cancelled``; a
        submit refused before anything was created is ``rejected``. Where the table refuses
        (a charged job is never marked cancelled, say) nothing changes."""
        assert status in {JobStatus.FAILED, JobStatus.CANCELLED}
        with self._tx() as tx:
            job = _job(tx, key)
            if status == JobStatus.CANCELLED:
                event = Event.CANCELLED  # only a submitted request is cancelled
            else:
                event = Event.FAILED if job.status == JobStatus.SUBMITTED else Event.REJECTED
            self._move(tx, job, event, error=error)

    def mark_unknown(self, key: str, error: str) -> None:
        """The submit's answer was lost: keep the reservation (it may be billed), flag the job."""
        with self._tx() as tx:
            self._move(tx, _job(tx, key), Event.ANSWER_LOST, request_status="submitting", error=error)

    def release_unknown(self, key: str) -> None:
        """Before an explicitly allowed resubmission of an unknown job: count the possibly
        billed request as charged (the safe side), so the limit still holds."""
        with self._tx() as tx:
            self._move(tx, _job(tx, key), Event.WRITE_OFF)

    def paid_requests(self, run_id: str) -> list[PaidRequest]:
        """Every request submitted for the run's jobs, in submit order (for manifests and audits)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(requests, jobs.c.narrative, jobs.c.variant, jobs.c["pass"], jobs.c.segment)
                .join(jobs, jobs.c.key == requests.c.job_key)
                .where(jobs.c.run_id == run_id)
                .order_by(requests.c.id)
            ).all()
        return [
            PaidRequest(
                job_key=r.job_key,
                attempt=r.attempt,
                request_id=r.request_id,
                status=r.status,
                charged=from_micro(r.charged_micro),
                narrative=r.narrative,
                variant=r.variant,
                pass_=r._mapping["pass"],
                segment=r.segment,
                created_at=r.created_at,
            )
            for r in rows
        ]


def _job(tx: Connection, key: str) -> Job:
    """The job ``key`` read inside transaction ``tx``, locked until it ends (FOR UPDATE; SQLite
    has no row locks and holds the database's write lock instead)."""
    return Job.from_row(tx.execute(sa.select(jobs).where(jobs.c.key == key).with_for_update()).one())


#: The SQL store under the name its users have always imported (``JobStore.open(url)``).
JobStore = SqlJobStore
