"""The clip library: every clip that was paid for, by the identity of its request, across runs.

A clip's identity hashes what determines the output of its request — provider, model, every body
field that matters, images by content, and for a chained segment its predecessor's identity (see
:mod:`pipeline.render.reuse`). Any run whose request has the same identity takes the clip from
here instead of buying it again.

The library is a table in the store's database: by default its own SQLite file beside the runs
(``{runs_dir}/library.db``, so it spans runs), on a shared ``KLINGFLOW_STORE_URL`` that database
(so it spans workers). Each row records the clip's file, sha256, size, request id, cost and the
run that paid for it, and — when shared storage was set — the key it was copied to. Rows are never
deleted: a pruned clip is marked ``gone`` and no longer reused. Each run that reused a clip is
recorded once in ``library_uses``, which is what "what the library saved" adds up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipeline.store.schema import create_tables, from_micro, insert_if_absent, open_engine, to_micro

__all__ = ["ClipLibrary", "LibraryClip", "LibraryStats", "library_exists", "library_url"]

LIBRARY_FILE = "library.db"

library_metadata = sa.MetaData()

clips = sa.Table(
    "library_clips",
    library_metadata,
    sa.Column("identity", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("model_id", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("cost_micro", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.String(200), nullable=False),
    sa.Column("shared_key", sa.Text, nullable=True),
    sa.Column("gone", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=False),
)

#: One row per (clip, run that reused it): a resumed run counts once.
uses = sa.Table(
    "library_uses",
    library_metadata,
    sa.Column("identity", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)


def library_url(runs_dir: Path, store_url: str | None) -> str:
    """Where the library lives: the shared store's database, else ``library.db`` beside the runs."""
    return store_url or f"sqlite:///{runs_dir / LIBRARY_FILE}"


def library_exists(url: str) -> bool:
    """False for a default library no run has created yet (reading it must not create it)."""
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).is_file()


@dataclass(frozen=True)
class LibraryClip:
    """One paid clip as the library records it."""

    identity: str
    provider: str
    model_id: str
    body: dict[str, Any]
    file: str
    sha256: str
    size: int
    request_id: str
    cost: Decimal
    #: The run that paid for it.
    run_id: str
    shared_key: str | None
    gone: bool
    created_at: float
    used_at: float

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> LibraryClip:
        """The clip of one ``library_clips`` row."""
        m = row._mapping
        return cls(
            identity=m["identity"],
            provider=m["provider"],
            model_id=m["model_id"],
            body=json.loads(m["body"]),
            file=m["file"],
            sha256=m["sha256"],
            size=m["size"],
            request_id=m["request_id"],
            cost=from_micro(m["cost_micro"]),
            run_id=m["run_id"],
            shared_key=m["shared_key"],
            gone=bool(m["gone"]),
            created_at=m["created_at"],
            used_at=m["used_at"],
        )


@dataclass(frozen=True)
class LibraryStats:
    """What ``klingflow library`` reports."""

    clips: int
    gone: int
    size_bytes: int
    paid: Decimal
    #: The cost of every reuse by a run other than the payer: money not spent again.
    saved: Decimal
    reuses: int


class ClipLibrary:
    """The library table on one database (SQLite or PostgreSQL, like the job store)."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        create_tables(engine, library_metadata)

    @classmethod
    def open(cls, url: str) -> ClipLibrary:
        """Open (creating its tables if needed) the library at an SQLAlchemy URL."""
        engine = open_engine(url)
        try:
            return cls(engine)
        except BaseException:
            engine.dispose()
            raise

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def find(self, identity: str) -> LibraryClip | None:
        """The clip of this identity unless there is none or its file was pruned."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(clips).where(clips.c.identity == identity, clips.c.gone == sa.false())
            ).first()
        return LibraryClip.from_row(row) if row is not None else None

    def known(self, identities: list[str]) -> set[str]:
        """Which of ``identities`` have a clip (not pruned): one query for a whole plan."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            # In chunks: SQLite limits the parameters of one statement.
            for i in range(0, len(identities), 500):
                chunk = identities[i : i + 500]
                found.update(
                    conn.execute(
                        sa.select(clips.c.identity).where(
                            clips.c.identity.in_(chunk), clips.c.gone == sa.false()
                        )
                    ).scalars()
                )
        return found

    def record(
        self,
        identity: str,
        *,
        provider: str,
        body: Mapping[str, Any],
        file: str,
        sha256: str,
        size: int,
        request_id: str,
        cost: Decimal,
        run_id: str,
        shared_key: str | None = None,
    ) -> None:
        """Record a paid clip. The first payer's row stays (another worker may record the same
        identity at once); a pruned row gets the new file back."""
        now = time.time()
        values: dict[str, Any] = {
            "provider": provider,
            "model_id": str(body.get("model_id", "")),
            "body": json.dumps(dict(body), sort_keys=True),
            "file": file,
            "sha256": sha256,
            "size": size,
            "request_id": request_id,
            "cost_micro": to_micro(cost),
            "run_id": run_id,
            "shared_key": shared_key,
            "gone": False,
            "created_at": now,
            "used_at": now,
        }
        with self.engine.begin() as tx:
            insert_if_absent(tx, clips, identity=identity, **values)
            tx.execute(
                clips.update().where(clips.c.identity == identity, clips.c.gone == sa.true()).values(**values)
            )

    def note_use(self, identity: str, run_id: str) -> None:
        """A run took this clip from the library (counted once per run)."""
        now = time.time()
        with self.engine.begin() as tx:
            insert_if_absent(tx, uses, identity=identity, run_id=run_id, created_at=now)
            tx.execute(clips.update().where(clips.c.identity == identity).values(used_at=now))

    def all_clips(self) -> list[LibraryClip]:
        """Every recorded clip, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(clips).order_by(clips.c.created_at, clips.c.identity)).all()
        return [LibraryClip.from_row(r) for r in rows]

    def mark_gone(self, identity: str) -> None:
        """The clip's file was removed: keep the record, never reuse it again."""
        with self.engine.begin() as tx:
            tx.execute(clips.update().where(clips.c.identity == identity).values(gone=True))

    def stats(self) -> LibraryStats:
        """The library's size and what it saved."""
        with self.engine.connect() as conn:
            every = conn.execute(sa.select(clips.c.gone, clips.c.size, clips.c.cost_micro)).all()
            saved = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(clips.c.cost_micro), 0))
                .select_from(uses.join(clips, uses.c.identity == clips.c.identity))
                .where(uses.c.run_id != clips.c.run_id)
            ).one()
        return LibraryStats(
            clips=len(every),
            gone=sum(1 for r in every if r.gone),
            size_bytes=sum(r.size for r in every if not r.gone),
            paid=from_micro(sum(r.cost_micro for r in every)),
            saved=from_micro(int(saved[1])),
            reuses=int(saved[0]),
        )
