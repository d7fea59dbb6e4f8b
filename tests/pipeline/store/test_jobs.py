"""The job store keeps job states and a spend ledger that never passes a run's limit.

Each test runs against SQLite and PostgreSQL (``store_url`` in conftest.py); several JobStore
instances on one URL stand for several workers sharing the store.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from pipeline.errors import JobBusy
from pipeline.stack.postgres import PostgresCluster
from pipeline.store.jobs import JobStatus, JobStore, job_key

BODY = {"prompt": "a bird", "duration": 5, "tier": "standard"}

OpenStore = Callable[[], JobStore]


def new_store(open_store: OpenStore, limit: str = "10") -> JobStore:
    store = open_store()
    store.ensure_run("r1", script="s", limit=Decimal(limit))
    return store


def add(store: JobStore, segment: int, body: dict[str, object] | None = None) -> str:
    job = store.upsert_job(
        run_id="r1", narrative="n", variant="a", pass_="draft", segment=segment, body=body or BODY
    )
    return job.key


def run_together(workers: int, work: Callable[[int], None]) -> None:
    """Run ``work(0..workers-1)`` in threads released at the same instant; re-raise any failure."""
    barrier = threading.Barrier(workers)

    def run(n: int) -> None:
        barrier.wait()
        work(n)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(workers)))


def test_key_depends_on_everything_that_determines_the_output() -> None:
    base = job_key("r1", "n", "a", "draft", 0, BODY)
    assert base == job_key("r1", "n", "a", "draft", 0, dict(reversed(list(BODY.items()))))
    assert base != job_key("r1", "n", "a", "draft", 1, BODY)
    assert base != job_key("r1", "n", "b", "draft", 0, BODY)
    assert base != job_key("r1", "n", "a", "final", 0, BODY)
    assert base != job_key("r2", "n", "a", "draft", 0, BODY)
    assert base != job_key("r1", "n", "a", "draft", 0, {**BODY, "seed": 1})


def test_upsert_is_idempotent_and_survives_reopening(open_store: OpenStore) -> None:
    store = new_store(open_store)
    key = add(store, 0)
    assert add(store, 0) == key
    store.begin_submit(key, Decimal("0.42"))
    store.mark_submitted(key, "req-1")
    store.close()
    again = open_store()
    job = again.get(key)
    assert (job.status, job.request_id, job.attempts) == (JobStatus.SUBMITTED, "req-1", 1)
    assert job.body == BODY
    assert again.spend("r1").reserved == Decimal("0.42")


def test_lifecycle_moves_money_from_reserved_to_charged(open_store: OpenStore) -> None:
    store = new_store(open_store)
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
    statuses = [(r.request_id, r.status, r.charged) for r in store.paid_requests("r1")]
    expected = [
        ("req-ok", "completed", Decimal(1)),
        ("req-bad", "failed", Decimal(0)),
        (None, "submitting", Decimal(0)),
    ]
    assert statuses == expected
    assert store.get(ok).size == 10


def test_reservation_refused_over_the_limit(open_store: OpenStore) -> None:
    store = new_store(open_store, limit="1.00")
    a, b = add(store, 0), add(store, 1)
    assert store.begin_submit(a, Decimal("0.60")) is not None
    assert store.begin_submit(b, Decimal("0.41")) is None
    assert store.get(b).status == JobStatus.PLANNED
    assert store.begin_submit(b, Decimal("0.40")) is not None
    assert store.spend("r1").committed == Decimal("1.00")


def test_resuming_keeps_the_original_limit(open_store: OpenStore) -> None:
    store = new_store(open_store, limit="5")
    assert store.ensure_run("r1", script="s", limit=Decimal("500")).limit == Decimal("5")


def test_amounts_past_32_bits_of_micro_usd(open_store: OpenStore) -> None:
    store = new_store(open_store, limit="1000000")  # 10^12 micro-USD
    key = add(store, 0)
    assert store.begin_submit(key, Decimal("4321.123456")) is not None
    store.mark_submitted(key, "req-big")  # the table: a clip comes from an accepted request
    store.mark_completed(key, file="/c.mp4", sha256="ab" * 32, size=5 * 2**31, cost=Decimal("4321.123456"))
    assert store.spend("r1").charged == Decimal("4321.123456")
    assert store.get(key).size == 5 * 2**31
    [run] = store.list_runs()
    assert (run.limit, run.jobs) == (Decimal(1_000_000), {"completed": 1})


def test_plan_order_is_bytewise(open_store: OpenStore) -> None:
    store = new_store(open_store)
    for narrative in ["ab-c", "abb", "a-b"]:
        for pass_ in ["draft", "final"]:
            store.upsert_job(run_id="r1", narrative=narrative, variant="v", pass_=pass_, segment=0, body=BODY)
    order = [(j.pass_, j.narrative) for j in store.jobs_of("r1")]
    assert order == [(p, n) for p in ["final", "draft"] for n in ["a-b", "ab-c", "abb"]]


def test_concurrent_threads_never_pass_the_limit(open_store: OpenStore) -> None:
    store = new_store(open_store, limit="10.00")
    keys = [add(store, i) for i in range(60)]
    granted: list[str] = []

    def submit(n: int) -> None:
        if store.begin_submit(keys[n], Decimal("0.84")) is not None:
            granted.append(keys[n])

    run_together(len(keys), submit)
    assert len(granted) == 11  # floor(10.00 / 0.84)
    assert store.spend("r1").committed == Decimal("9.24")


def test_workers_starting_together_share_one_run_and_one_job(open_store: OpenStore) -> None:
    keys: list[str] = []

    def start_worker(_n: int) -> None:
        store = new_store(open_store)  # each creates the tables, the run and the job if missing
        keys.append(add(store, 0))

    run_together(4, start_worker)
    store = open_store()
    assert len(set(keys)) == 1
    assert [j.key for j in store.jobs_of("r1")] == keys[:1]
    assert [r.run_id for r in store.list_runs()] == ["r1"]


def test_two_workers_reserve_within_the_limit_and_complete_each_job_once(open_store: OpenStore) -> None:
    workers = [new_store(open_store, limit="10.00"), open_store()]
    keys = [add(workers[i % 2], i) for i in range(40)]
    granted: list[str] = []

    def reserve(n: int) -> None:  # 8 threads, 4 on each worker's store
        for key in keys[n::8]:
            if workers[n % 2].begin_submit(key, Decimal("0.84")) is not None:
                granted.append(key)

    run_together(8, reserve)
    assert len(granted) == 11
    for key in granted:
        workers[0].mark_submitted(key, f"req-{key[:12]}")

    def complete(n: int) -> None:  # both workers finish every job, at once (a retried task)
        for key in granted:
            workers[n % 2].mark_completed(key, file=f"/{key}.mp4", sha256=key, size=1, cost=Decimal("0.80"))

    run_together(6, complete)
    spend = workers[1].spend("r1")
    assert (spend.reserved, spend.charged) == (Decimal(0), Decimal("8.80"))
    assert {workers[0].get(k).charged_micro for k in granted} == {800_000}
    paid = workers[0].paid_requests("r1")
    assert len(paid) == 11
    assert {(r.status, r.charged) for r in paid} == {("completed", Decimal("0.8"))}


RESERVE_MANY = """
import sys
from decimal import Decimal
from pipeline.store.jobs import JobStore
store = JobStore.open(sys.argv[1])
won = 0
for i in range(int(sys.argv[2]), int(sys.argv[2]) + 30):
    key = store.upsert_job(run_id="r1", narrative="n", variant="a", pass_="draft", segment=i, body={"p": 1}).key
    won += store.begin_submit(key, Decimal("0.50")) is not None
store.close()
print(won)
"""


def test_concurrent_processes_never_pass_the_limit(store_url: str, open_store: OpenStore) -> None:
    new_store(open_store, limit="7.00").close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RESERVE_MANY, store_url, str(n * 100)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    won = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(won) == 14
    assert open_store().spend("r1").committed == Decimal("7.00")


def test_plan_order_ignores_a_postgresql_database_collation(postgres_cluster: PostgresCluster) -> None:
    """Production databases often sort text by a language that skips '-' (en_US); plans must not."""
    create = "CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US-u-ka-shifted'"
    with psycopg.connect(postgres_cluster.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(sql.SQL(create).format(sql.Identifier("store_en_us")))
    url = postgres_cluster.url("store_en_us")
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT 'abb' < 'ab-c'").fetchone() == (True,)  # the database's order
    store = JobStore.open(url)
    try:
        store.ensure_run("r1", script="s", limit=Decimal(1))
        for narrative in ["abb", "ab-c"]:
            store.upsert_job(
                run_id="r1", narrative=narrative, variant="v", pass_="draft", segment=0, body=BODY
            )
        assert [j.narrative for j in store.jobs_of("r1")] == ["ab-c", "abb"]  # SQLite's and Python's
    finally:
        store.close()


def test_a_finished_request_is_charged_once_before_its_clip_is_downloaded(open_store: OpenStore) -> None:
    workers = [new_store(open_store), open_store()]
    key = add(workers[0], 0)
    workers[0].begin_submit(key, Decimal("0.84"))
    workers[0].mark_submitted(key, "req-1")
    # Both workers see the result say "completed" (a retried task): charged once, at its cost.
    assert [w.mark_charged(key, "req-1", Decimal("0.80")) for w in workers] == [True, False]
    assert not workers[0].mark_charged(key, "req-other", Decimal("0.80"))  # not this job's request
    spend = workers[1].spend("r1")
    assert (spend.reserved, spend.charged) == (Decimal(0), Decimal("0.80"))
    job = workers[1].get(key)
    assert (job.status, job.charged_micro, job.file) == (JobStatus.CHARGED, 800_000, None)
    # The download arrives later: completed, and not charged a second time.
    workers[1].mark_completed(key, file="/c.mp4", sha256="ab" * 32, size=10, cost=Decimal("0.84"))
    spend = workers[0].spend("r1")
    assert (spend.reserved, spend.charged) == (Decimal(0), Decimal("0.80"))
    job = workers[0].get(key)
    assert (job.status, job.charged_micro, job.file) == (JobStatus.COMPLETED, 800_000, "/c.mp4")
    assert [(r.status, r.charged) for r in workers[0].paid_requests("r1")] == [("completed", Decimal("0.8"))]


def test_a_charged_job_is_never_bought_again(open_store: OpenStore) -> None:
    store = new_store(open_store)
    key = add(store, 0)
    store.begin_submit(key, Decimal("1"))
    store.mark_submitted(key, "req-1")
    store.mark_charged(key, "req-1", Decimal("1"))
    with pytest.raises(JobBusy):
        store.begin_submit(key, Decimal("1"))
    with pytest.raises(JobBusy):
        store.begin_submit(key, Decimal("1"), replace_unknown=True)


def test_replacing_an_unknown_job_counts_the_lost_request_or_changes_nothing(open_store: OpenStore) -> None:
    store = new_store(open_store, limit="2.00")
    key = add(store, 0)
    store.begin_submit(key, Decimal("0.84"))
    store.mark_unknown(key, "read timeout after submit")
    with pytest.raises(JobBusy):
        store.begin_submit(key, Decimal("0.84"))  # only with the explicit opt-in
    assert store.begin_submit(key, Decimal("1.17"), replace_unknown=True) is None  # 0.84 + 1.17 > 2
    job = store.get(key)
    assert (job.status, job.reserved_micro, job.attempts) == (JobStatus.UNKNOWN, 840_000, 1)
    assert store.spend("r1").reserved == Decimal("0.84")

    assert store.begin_submit(key, Decimal("1.16"), replace_unknown=True) is not None
    spend = store.spend("r1")
    assert (spend.reserved, spend.charged) == (Decimal("1.16"), Decimal("0.84"))  # lost one: charged
    job = store.get(key)
    assert (job.status, job.attempts, job.charged_micro) == (JobStatus.SUBMITTING, 2, 840_000)
    attempts = [(r.attempt, r.status, r.charged) for r in store.paid_requests("r1")]
    assert attempts == [(1, "unknown", Decimal("0.84")), (2, "submitting", 0)]
