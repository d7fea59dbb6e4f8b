"""The engine's logic over a scripted provider: what the sandbox tests show, in milliseconds.

No sockets, no ffmpeg: :class:`FakeProvider` follows scripted timelines and faults, writes
placeholder clips, and keeps the ledger a provider would; the job store is SQLite in tmp_path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import RunAborted
from pipeline.generation import GenerationSpec
from pipeline.planning.plan import PlannedRequest
from pipeline.pricing import Tier, request_cost
from pipeline.providers.base import JobState
from pipeline.providers.fake import (
    DONE,
    FAILS,
    NEVER,
    FakeProvider,
    FakeScript,
    SubmitFault,
    placeholder_frame,
)
from pipeline.providers.latency import LatencyModel
from pipeline.providers.polling import PollPolicy
from pipeline.render.engine import BUDGET_EXHAUSTED, Engine, JobResult
from pipeline.render.layout import RunLayout
from pipeline.render.limits import LocalLimits
from pipeline.store.jobs import JobStatus, SqlJobStore

#: Provider seconds scaled to microseconds; waits never give up (a scripted timeline ends them).
POLICY = PollPolicy(latency=LatencyModel(scale=1e-6), max_wait_s=1e9)
#: For a request that never finishes: the wait gives up after 2 ms.
IMPATIENT = PollPolicy(latency=LatencyModel(scale=1e-6), max_wait_s=2000)


def req(segment: int, duration: int = 5, *, narrative: str = "n", chained: bool = False) -> PlannedRequest:
    return PlannedRequest(
        narrative=narrative,
        variant="a",
        pass_="draft",
        segment=segment,
        tier=Tier.STANDARD,
        duration=duration,
        audio=False,
        shots=1,
        trimmed_seconds=0,
        prompt=f"{narrative} shot {segment}",
        negative_prompt=None,
        aspect_ratio="16:9",
        cfg_scale=0.5,
        seed=None,
        start_image=None,
        chained=chained,
        end_image=None,
        cost=request_cost(Tier.STANDARD, duration, False),
        provisional=False,
    )


def total(requests: Sequence[PlannedRequest]) -> Decimal:
    return sum((r.cost for r in requests), Decimal(0))


async def image_url(path: str) -> str:
    return f"https://images.invalid/{Path(path).name}"


class Run:
    """One run directory and store; :meth:`pass_` runs a pass with a fresh engine (a rerun)."""

    def __init__(self, tmp_path: Path) -> None:
        self.layout = RunLayout(tmp_path / "runs" / "r1")
        self.store = SqlJobStore.open(self.layout.db_url)
        self.tmp_path = tmp_path
        self.events: list[tuple[str, str, str]] = []

    def pass_(
        self,
        fake: FakeProvider,
        requests: Sequence[PlannedRequest],
        *,
        limit: Decimal = Decimal("100"),
        **options: object,
    ) -> list[JobResult]:
        self.store.ensure_run("r1", script="s", limit=limit)  # a resumed run keeps its limit
        engine = Engine(
            run_id="r1",
            provider=fake,
            image_url=image_url,
            store=self.store,
            layout=self.layout,
            limits=LocalLimits(16, 1e6, 16),
            base_dir=self.tmp_path,
            on_event=lambda e, r, d: self.events.append((e, r.prompt, d)),
            script_file="s.yaml",
            extract_last_frame=placeholder_frame,
            **{"policy": POLICY, **options},  # type: ignore[arg-type]
        )
        return asyncio.run(engine.run_pass(requests))

    def kinds(self, event: str) -> int:
        return sum(e == event for e, _, _ in self.events)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    opened = Run(tmp_path)
    yield opened
    opened.store.close()


def assert_charged_once(fake: FakeProvider) -> None:
    assert all(r.charge_count <= 1 for r in fake.requests.values())


def chaos(seed: int) -> Callable[[GenerationSpec, int], FakeScript]:
    """Lost answers, 429s, failed generations and failed downloads, at random (seeded)."""
    rng = random.Random(seed)
    choices = [
        FakeScript(),
        FakeScript(),
        FakeScript(submit_fault=SubmitFault.LOST),
        FakeScript(submit_fault=SubmitFault.RATE_LIMITED),
        FakeScript(timeline=FAILS),
        FakeScript(download_failures=1),
    ]
    return lambda spec, number: rng.choice(choices)


@pytest.mark.parametrize("seed", range(8))
def test_spend_never_passes_the_limit_under_faults(run: Run, seed: int) -> None:
    requests = [req(i, 5 + i % 3) for i in range(12)]
    limit = total(requests) - Decimal("0.50")
    fake = FakeProvider(script_for=chaos(seed))

    results = run.pass_(fake, requests, limit=limit, max_regenerations=4)

    spend = run.store.spend("r1")
    assert fake.billed <= spend.committed <= limit  # lost answers stay reserved
    assert_charged_once(fake)
    assert any(r.error == BUDGET_EXHAUSTED for r in results)  # the limit bit
    # Every job ended in a state the table allows as an end of a pass.
    ends = {JobStatus.COMPLETED, JobStatus.CHARGED, JobStatus.FAILED, JobStatus.UNKNOWN}
    assert {r.status for r in results} <= ends
    assert {j.status for j in run.store.jobs_of("r1")} <= ends | {JobStatus.PLANNED}


def test_a_rerun_reuses_clips_and_a_lost_clip_is_downloaded_not_bought(run: Run) -> None:
    requests = [req(i) for i in range(3)]
    fake = FakeProvider()
    first = run.pass_(fake, requests)
    assert all(r.ok and r.status == JobStatus.COMPLETED for r in first)
    assert fake.submits == 3

    second = run.pass_(fake, requests)
    assert all(r.ok and r.reused for r in second)
    assert fake.submits == 3

    damaged = second[0].clip
    assert damaged is not None
    damaged.path.write_bytes(b"damaged")
    third = run.pass_(fake, requests)
    assert all(r.ok for r in third) and not third[0].reused
    assert run.kinds("resumed") == 1
    assert fake.submits == 3
    assert_charged_once(fake)
    assert run.store.spend("r1").charged == fake.billed == total(requests)


def test_an_unknown_job_stays_unknown_until_resubmission_is_allowed(run: Run) -> None:
    requests = [req(i) for i in range(3)]
    lost = FakeScript(submit_fault=SubmitFault.LOST)
    fake = FakeProvider(scripts=[lost] * 3)
    first = run.pass_(fake, requests)
    assert [r.status for r in first] == [JobStatus.UNKNOWN] * 3
    assert run.store.spend("r1").reserved == total(requests)  # they may be billed

    again = run.pass_(fake, requests)
    assert [r.status for r in again] == [JobStatus.UNKNOWN] * 3
    assert all("--resubmit-unknown" in (r.error or "") for r in again)
    assert fake.submits == 3  # never resubmitted silently

    allowed = run.pass_(fake, requests, resubmit_unknown=True)
    assert all(r.ok for r in allowed)
    assert fake.submits == 6
    spend = run.store.spend("r1")
    # The lost requests count as charged: the ledger covers what the provider billed.
    assert spend.charged == fake.billed == 2 * total(requests)
    assert spend.reserved == 0


def test_resubmitting_an_unknown_job_is_refused_when_the_budget_is_short(run: Run) -> None:
    requests = [req(0, 10)]  # $0.84
    fake = FakeProvider(scripts=[FakeScript(submit_fault=SubmitFault.LOST)])
    run.pass_(fake, requests, limit=Decimal("1.00"))
    [result] = run.pass_(fake, requests, resubmit_unknown=True)
    assert result.status == JobStatus.UNKNOWN
    assert "short by $0.68" in (result.error or "") and "has $0.16 of its $1.00 budget left" in (
        result.error or ""
    )
    assert fake.submits == 1
    assert run.store.get(run.store.jobs_of("r1")[0].key).status == JobStatus.UNKNOWN


def test_interrupted_while_submitting_becomes_unknown(run: Run) -> None:
    [request] = requests = [req(0)]
    run.store.ensure_run("r1", script="s", limit=Decimal(10))
    fake = FakeProvider()
    run.pass_(fake, requests)  # creates the job (completed); make another like it interrupted
    other = dataclasses.replace(request, segment=1, prompt="other")
    key = run.store.upsert_job(
        run_id="r1", narrative="n", variant="a", pass_="draft", segment=1, body=_body_of(run, other)
    ).key
    assert run.store.begin_submit(key, other.cost) is not None  # then the process died
    [result] = run.pass_(fake, [other])
    assert result.status == JobStatus.UNKNOWN
    assert "interrupted while submitting" in (result.error or "")
    assert fake.submits == 1


def _body_of(run: Run, request: PlannedRequest) -> dict[str, object]:
    from pipeline.render.job import job_body

    return job_body(request, None, None)


def test_a_charged_clip_that_did_not_arrive_is_downloaded_on_the_next_run(run: Run) -> None:
    requests = [req(i) for i in range(2)]
    fake = FakeProvider(default=FakeScript(download_failures=1))
    first = run.pass_(fake, requests)
    assert [r.status for r in first] == [JobStatus.CHARGED] * 2
    assert all("is charged" in (r.error or "") and "not bought again" in (r.error or "") for r in first)
    spend = run.store.spend("r1")
    assert (spend.charged, spend.reserved) == (fake.billed, Decimal(0))
    kinds = [e for e, _, _ in run.events]
    assert kinds.index("charged") < kinds.index("failed")  # charged before the download failed

    second = run.pass_(fake, requests)
    assert all(r.ok and r.status == JobStatus.COMPLETED for r in second)
    assert fake.submits == 2
    assert all(r.downloads == 2 for r in fake.requests.values())
    assert_charged_once(fake)
    assert run.store.spend("r1").charged == fake.billed


def test_chains_run_in_order_from_each_previous_last_frame(run: Run) -> None:
    chain = [req(0, narrative="c")] + [req(i, narrative="c", chained=True) for i in (1, 2)]
    loose = [req(0, narrative="loose")]
    fake = FakeProvider()
    results = run.pass_(fake, [*chain, *loose])
    assert all(r.ok for r in results)
    log = fake.log
    for i in (1, 2):
        previous = next(rid for rid, r in fake.requests.items() if r.spec.prompt == f"c shot {i - 1}")
        assert log.index(f"download {previous}") < log.index(f"submit c shot {i}")
        spec = next(r.spec for r in fake.requests.values() if r.spec.prompt == f"c shot {i}")
        expected = run.layout.last_frame("c", "a", "draft", i - 1).name
        assert spec.start_image_url == f"https://images.invalid/{expected}"


def test_a_broken_chain_stops_without_buying_the_rest(run: Run) -> None:
    chain = [req(0, narrative="c")] + [req(i, narrative="c", chained=True) for i in (1, 2)]
    fake = FakeProvider(scripts=[FakeScript(), FakeScript(timeline=FAILS)])
    results = run.pass_(fake, chain, max_regenerations=0)
    assert [r.status for r in results] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.FAILED]
    assert results[2].error == "the previous segment has no clip to continue from"
    assert fake.submits == 2


def test_failed_generations_are_regenerated_within_budget(run: Run) -> None:
    [request] = requests = [req(0, 10)]
    fake = FakeProvider(scripts=[FakeScript(timeline=FAILS)] * 2)
    # Exactly one request's cost: failures release their reservation, so it can be bought again.
    [result] = run.pass_(fake, requests, limit=request.cost, max_regenerations=2)
    assert result.ok
    assert fake.submits == 3 and run.kinds("regenerate") == 2
    assert run.store.spend("r1").charged == fake.billed == request.cost


def test_regeneration_stops_after_max_regenerations(run: Run) -> None:
    fake = FakeProvider(default=FakeScript(timeline=FAILS))
    [result] = run.pass_(fake, [req(0)], max_regenerations=1)
    assert result.status == JobStatus.FAILED and "failed" in (result.error or "")
    assert fake.submits == 2 and fake.billed == 0
    assert run.store.spend("r1").committed == 0


def test_a_429_creates_nothing_and_the_job_is_submitted_again(run: Run) -> None:
    fake = FakeProvider(scripts=[FakeScript(submit_fault=SubmitFault.RATE_LIMITED)])
    [result] = run.pass_(fake, [req(0)])
    assert result.ok and fake.submits == 2
    statuses = [r.status for r in run.store.paid_requests("r1")]
    assert statuses == ["not_sent", "completed"]


def test_a_refused_request_fails_without_money(run: Run) -> None:
    fake = FakeProvider(scripts=[FakeScript(submit_fault=SubmitFault.REJECTED)])
    [result] = run.pass_(fake, [req(0)], max_regenerations=0)
    assert result.status == JobStatus.FAILED and (result.error or "").startswith("refused:")
    assert run.store.spend("r1").committed == 0


@pytest.mark.parametrize("fault", [SubmitFault.AUTH, SubmitFault.NO_BALANCE])
def test_a_bad_token_or_no_balance_aborts_the_run(run: Run, fault: SubmitFault) -> None:
    fake = FakeProvider(scripts=[FakeScript(submit_fault=fault)])
    with pytest.raises(RunAborted):
        run.pass_(fake, [req(0)])
    [job] = run.store.jobs_of("r1")
    assert job.status == JobStatus.FAILED
    assert run.store.spend("r1").committed == 0


def test_a_request_still_running_when_we_stop_waiting_is_followed_on_the_next_run(run: Run) -> None:
    fake = FakeProvider(scripts=[FakeScript(timeline=NEVER)])
    [first] = run.pass_(fake, [req(0)], policy=IMPATIENT)
    assert first.status == JobStatus.SUBMITTED and "rerun to pick it up again" in (first.error or "")
    assert run.store.spend("r1").reserved == req(0).cost  # still reserved: it may be billed
    [request] = fake.requests.values()
    request.script = FakeScript(timeline=DONE)  # it finished meanwhile
    [second] = run.pass_(fake, [req(0)])
    assert second.ok and fake.submits == 1
    assert run.store.spend("r1").charged == fake.billed


def test_cancel_live_cancels_queued_requests(run: Run) -> None:
    fake = FakeProvider(default=FakeScript(timeline=(JobState.QUEUED,)))

    async def interrupt() -> tuple[list[str], list[str]]:
        run.store.ensure_run("r1", script="s", limit=Decimal(10))
        submitted = asyncio.Event()
        engine = Engine(
            run_id="r1",
            provider=fake,
            image_url=image_url,
            store=run.store,
            layout=run.layout,
            limits=LocalLimits(4, 1e6, 4),
            base_dir=run.tmp_path,
            policy=POLICY,
            on_event=lambda e, r, d: submitted.set() if e == "submitted" else None,
        )
        task = asyncio.ensure_future(engine.run_pass([req(0)]))
        await submitted.wait()
        await asyncio.sleep(0)  # the engine starts following it (and lists it as live)
        outcome = await engine.cancel_live()
        task.cancel()  # as on Ctrl-C (it may already have seen the cancellation and ended)
        await asyncio.gather(task, return_exceptions=True)
        return outcome

    cancelled, billing = asyncio.run(interrupt())
    assert (len(cancelled), billing) == (1, [])
    [job] = run.store.jobs_of("r1")
    assert job.status == JobStatus.CANCELLED and run.store.spend("r1").committed == 0
