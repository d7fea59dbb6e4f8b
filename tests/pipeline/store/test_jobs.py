"""The job store keeps job states and a spend ledger that never passes a run's limit."""

from __future__ import annotations

import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

from pipeline.store.jobs import JobStatus, JobStore, job_key

BODY = {"prompt": "a bird", "duration": 5, "tier": "standard"}


def new_store(tmp_path: Path, limit: str = "10") -> JobStore:
    store = JobStore.in_directory(tmp_path)
    store.ensure_run("r1", script="s", limit=Decimal(limit))
    return store


def add(store: JobStore, segment: int, body: dict[str, object] | None = None) -> str:
    job = store.upsert_job(
        run_id="r1", narrative="n", variant="a", pass_="draft", segment=segment, body=body or BODY
    )
    return job.key


def test_key_depends_on_everything_that_determines_the_output() -> None:
    base = job_key("r1", "n", "a", "draft", 0, BODY)
    assert base == job_key("r1", "n", "a", "draft", 0, dict(reversed(list(BODY.items()))))
    assert base != job_key("r1", "n", "a", "draft", 1, BODY)
    assert base != job_key("r1", "n", "b", "draft", 0, BODY)
    assert base != job_key("r1", "n", "a", "final", 0, BODY)
    assert base != job_key("r2", "n", "a", "draft", 0, BODY)
    assert base != job_key("r1", "n", "a", "draft", 0, {**BODY, "seed": 1})


def test_upsert_is_idempotent_and_survives_reopening(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    key = add(store, 0)
    assert add(store, 0) == key
    store.begin_submit(key, Decimal("0.42"))
    store.mark_submitted(key, "req-1")
    store.close()
    again = JobStore.in_directory(tmp_path)
    job = again.get(key)
    assert (job.status, job.request_id, job.attempts) == (JobStatus.SUBMITTED, "req-1", 1)
    assert again.spend("r1").reserved == Decimal("0.42")


def test_lifecycle_moves_money_from_reserved_to_charged(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    ok, bad, lost = add(store, 0), add(store, 1), add(store, 2)
    for key in (ok, bad, lost):
        assert store.begin_submit(key, Decimal("1.00")) is not None
    assert store.spend("r1").reserved == Decimal("3")
    store.mark_submitted(ok, "req-ok")
    store.mark_completed(ok, file="/c.mp4", sha256="ab" * 32, size=10, cost=Decimal("1.00"))
    store.mark_completed(ok, file="/c.mp4", sha256="ab" * 32, size=10, cost=Decimal("1.00"))  # idempotent
    store.mark_submitted(bad, "req-bad")
    store.mark_ended(bad, JobStatus.FAILED, error="generation failed")
    store.mark_unknown(lost, "read timeout after submit")
    spend = store.spend("r1")
    assert (spend.reserved, spend.charged) == (Decimal("1"), Decimal("1"))  # the unknown one stays reserved
    store.release_unknown(lost)
    spend = store.spend("r1")
    assert (spend.reserved, spend.charged) == (Decimal("0"), Decimal("2"))  # counted as billed
    assert store.get(lost).status == JobStatus.PLANNED
    statuses = [(r["request_id"], r["status"], r["charged_micro"]) for r in store.paid_requests("r1")]
    assert statuses == [("req-ok", "completed", 1_000_000), ("req-bad", "failed", 0), (None, "submitting", 0)]


def test_reservation_refused_over_the_limit(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit="1.00")
    a, b = add(store, 0), add(store, 1)
    assert store.begin_submit(a, Decimal("0.60")) is not None
    assert store.begin_submit(b, Decimal("0.41")) is None
    assert store.get(b).status == JobStatus.PLANNED
    assert store.begin_submit(b, Decimal("0.40")) is not None
    assert store.spend("r1").committed == Decimal("1.00")


def test_resuming_keeps_the_original_limit(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit="5")
    assert store.ensure_run("r1", script="s", limit=Decimal("500")).limit == Decimal("5")


def test_concurrent_threads_never_pass_the_limit(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit="10.00")
    keys = [add(store, i) for i in range(60)]
    granted: list[str] = []
    lock = threading.Lock()

    def submit(key: str) -> None:
        if store.begin_submit(key, Decimal("0.84")) is not None:
            with lock:
                granted.append(key)

    threads = [threading.Thread(target=submit, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 11  # floor(10.00 / 0.84)
    assert store.spend("r1").committed == Decimal("9.24")


RESERVE_MANY = """
import sys
from decimal import Decimal
from pathlib import Path
from pipeline.store.jobs import JobStore
store = JobStore.in_directory(Path(sys.argv[1]))
won = 0
for i in range(int(sys.argv[2]), int(sys.argv[2]) + 30):
    key = store.upsert_job(run_id="r1", narrative="n", variant="a", pass_="draft", segment=i, body={"p": 1}).key
    won += store.begin_submit(key, Decimal("0.50")) is not None
print(won)
"""


def test_concurrent_processes_never_pass_the_limit(tmp_path: Path) -> None:
    new_store(tmp_path, limit="7.00").close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RESERVE_MANY, str(tmp_path), str(n * 100)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    won = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(won) == 14
    assert JobStore.in_directory(tmp_path).spend("r1").committed == Decimal("7.00")
