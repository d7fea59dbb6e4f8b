"""The job store's tables and rows, and money as integers: what :mod:`pipeline.store.jobs` keeps.

Amounts are integers in micro-USD (prices are whole mills) *in the columns only*: this is the
store's boundary, where :func:`to_micro` and :func:`from_micro` convert; everything the store
returns or takes (``Spend``, ``Job.reserved``, costs) is ``Decimal`` USD, as everywhere else. Names that plans are ordered by sort
bytewise on every database; money and sizes are BIGINT.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from pipeline.store.transitions import BUYABLE, TERMINAL, JobStatus

MICRO = Decimal(1_000_000)


def to_micro(amount: Decimal) -> int:
    """USD → integer micro-USD (exact for every price in the table)."""
    return int((amount * MICRO).to_integral_value())


def from_micro(micro: int) -> Decimal:
    """Integer micro-USD → USD."""
    return Decimal(micro) / MICRO


# The states live with their transitions (one table); re-exported here for the store's users.
__all__ = [
    "BUYABLE",
    "MICRO",
    "TERMINAL",
    "Job",
    "JobStatus",
    "PaidRequest",
    "RunSummary",
    "Spend",
    "from_micro",
    "job_key",
    "to_micro",
]


#: The PostgreSQL advisory lock held while one worker creates the tables (any constant will do).
DDL_LOCK_ID = int.from_bytes(b"klingflo")

metadata = sa.MetaData()


def _name(length: int) -> sa.types.TypeEngine[str]:
    """A name that plans are ordered by: bytewise on PostgreSQL too, whatever the database's locale."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(200), primary_key=True),
    sa.Column("script", sa.String(200), nullable=False),
    sa.Column("limit_micro", sa.BigInteger, nullable=False),
    sa.Column("reserved_micro", sa.BigInteger, nullable=False, default=0),
    sa.Column("charged_micro", sa.BigInteger, nullable=False, default=0),
    sa.Column("status", sa.String(40), nullable=False, default="running"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(200), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("narrative", _name(200), nullable=False),
    sa.Column("variant", _name(200), nullable=False),
    sa.Column("pass", _name(10), nullable=False),
    sa.Column("segment", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("request_id", sa.String(200), nullable=True),
    sa.Column("reserved_micro", sa.BigInteger, nullable=False, default=0),
    sa.Column("charged_micro", sa.BigInteger, nullable=False, default=0),
    sa.Column("file", sa.Text, nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Every paid request ever submitted for a job (a regenerated job has several).
requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_key", sa.String(64), sa.ForeignKey("jobs.key"), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(200), nullable=True, unique=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("charged_micro", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
)


def job_key(
    run_id: str, narrative: str, variant: str, pass_: str, segment: int, body: Mapping[str, Any]
) -> str:
    """The identity of a job: a sha256 over its run and everything that determines its output.

    ``body`` must identify image inputs by content (e.g. their sha256), not by presigned URLs,
    which change on every upload.
    """
    ident = {
        "run": run_id,
        "narrative": narrative,
        "variant": variant,
        "pass": pass_,
        "segment": segment,
        "body": body,
    }
    canonical = json.dumps(ident, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    """One row of the job store."""

    key: str
    run_id: str
    narrative: str
    variant: str
    pass_: str
    segment: int
    body: dict[str, Any]
    status: JobStatus
    attempts: int
    request_id: str | None
    reserved_micro: int
    charged_micro: int
    file: str | None
    sha256: str | None
    size: int | None
    error: str | None

    @property
    def reserved(self) -> Decimal:
        """Money reserved for the job's request in flight, in USD."""
        return from_micro(self.reserved_micro)

    @property
    def charged(self) -> Decimal:
        """Money charged for the job's requests so far, in USD."""
        return from_micro(self.charged_micro)

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Job:
        """The job of one ``jobs`` row."""
        m = row._mapping
        return cls(
            key=m["key"],
            run_id=m["run_id"],
            narrative=m["narrative"],
            variant=m["variant"],
            pass_=m["pass"],
            segment=m["segment"],
            body=json.loads(m["body"]),
            status=JobStatus(m["status"]),
            attempts=m["attempts"],
            request_id=m["request_id"],
            reserved_micro=m["reserved_micro"],
            charged_micro=m["charged_micro"],
            file=m["file"],
            sha256=m["sha256"],
            size=m["size"],
            error=m["error"],
        )


@dataclass(frozen=True)
class Spend:
    """A run's money: its limit, what is reserved for requests in flight, what was charged."""

    limit: Decimal
    reserved: Decimal
    charged: Decimal

    @property
    def committed(self) -> Decimal:
        """Reserved plus charged: what the run may still be billed at most."""
        return self.reserved + self.charged


@dataclass(frozen=True)
class RunSummary:
    """One run as ``klingflow status`` lists it: its money and its jobs counted by status."""

    run_id: str
    script: str
    status: str
    limit: Decimal
    reserved: Decimal
    charged: Decimal
    #: Job status → how many jobs of the run are in it.
    jobs: dict[str, int]
    created_at: float


@dataclass(frozen=True)
class PaidRequest:
    """One request submitted for a job (a regenerated job has several), with where it ended."""

    job_key: str
    attempt: int
    request_id: str | None
    #: The job status the attempt ended in, or ``not_sent`` (a 429 created nothing).
    status: str
    charged: Decimal
    narrative: str
    variant: str
    pass_: str
    segment: int
    created_at: float


#: Tries of ``PRAGMA journal_mode=WAL`` on a database others are opening too (about 10 s in all).
WAL_ATTEMPTS = 20


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Set on every new SQLite connection of the store."""
    # WAL lets readers (klingflow status) work while a run writes; synchronous=FULL so a state
    # written before a paid step survives a machine restart, not just a process kill.
    cursor = dbapi_connection.cursor()
    # Switching a new database to WAL takes an exclusive lock, and SQLite may answer "database is
    # locked" at once (no busy wait) when several processes open it at the same moment: retry.
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for the store at ``url`` (SQLite's directory created), set up as every store
    of klingflow needs it."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # A generous busy timeout: several processes may write the same SQLite file.
        engine = sa.create_engine(url, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", sqlite_pragmas)
        return engine
    if sa.make_url(url).get_backend_name() == "postgresql":
        # READ COMMITTED whatever the server's default: the conditional UPDATEs rely on it
        # (under REPEATABLE READ a concurrent update is an error, not a wait and a re-check).
        # pool_pre_ping: a worker outlives database restarts and idle-connection reapers.
        return sa.create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    return sa.create_engine(url, pool_pre_ping=True)


def insert_if_absent(tx: Connection, table: sa.Table, **values: Any) -> None:
    """Insert a row unless one with its primary key exists (created meanwhile by another worker)."""
    if tx.dialect.name in {"postgresql", "sqlite"}:
        insert = postgresql.insert if tx.dialect.name == "postgresql" else sqlite.insert
        tx.execute(insert(table).values(**values).on_conflict_do_nothing())
        return
    where = [column == values[column.name] for column in table.primary_key.columns]
    if tx.execute(sa.select(*table.primary_key.columns).where(*where)).first() is None:
        tx.execute(table.insert().values(**values))


def create_tables(engine: Engine, tables: sa.MetaData = metadata) -> None:
    """Create the tables of ``tables`` that are missing (the job store's by default), one creator
    at a time: workers opening a new store together would otherwise race between "is it there?"
    and CREATE TABLE."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if all(inspector.has_table(table.name) for table in tables.sorted_tables):
            return
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(DDL_LOCK_ID)))
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        tables.create_all(conn)  # checks again, under the lock
        conn.commit()
