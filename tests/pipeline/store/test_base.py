"""The JobStore protocol: SqlJobStore, its implementation, offers every call with its signature."""

from __future__ import annotations

import inspect
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.store.base import JobStore
from pipeline.store.jobs import SqlJobStore

PROTOCOL_METHODS = sorted(
    name for name, member in vars(JobStore).items() if callable(member) and not name.startswith("_")
)


def test_the_protocol_lists_the_calls_the_engine_makes() -> None:
    assert {"spend", "upsert_job", "begin_submit", "mark_charged", "mark_completed", "mark_unknown"} <= set(
        PROTOCOL_METHODS
    )


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_sql_job_store_has_every_protocol_method_with_the_same_signature(name: str) -> None:
    wanted = inspect.signature(getattr(JobStore, name))
    implemented = getattr(SqlJobStore, name, None)
    assert callable(implemented), f"SqlJobStore lacks {name}"
    got = inspect.signature(implemented)
    assert [(p.name, p.kind) for p in got.parameters.values()] == [
        (p.name, p.kind) for p in wanted.parameters.values()
    ]
    for param in wanted.parameters.values():
        assert got.parameters[param.name].default == param.default, f"{name}({param.name}=…)"
    assert got.return_annotation == wanted.return_annotation


def test_an_open_sql_job_store_is_used_through_the_protocol(tmp_path: Path) -> None:
    sql = SqlJobStore.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        sql.ensure_run("r", script="s.yaml", limit=Decimal(10))
        store: JobStore = sql  # mypy (strict) checks the structural match
        store.set_run_status("r", "delivered")
        assert store.spend("r").limit == Decimal(10)
        assert store.spend("r").committed == 0
    finally:
        sql.close()
