"""The scripted provider behaves like a provider: timelines, faults, a ledger that bills once."""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import (
    AuthError,
    BadRequest,
    DownloadIncomplete,
    NoBalance,
    RateLimited,
    SubmitOutcomeUnknown,
)
from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.base import JobState, Provider
from pipeline.providers.fake import FAILS, FakeProvider, FakeScript, SubmitFault, placeholder_frame

SPEC = GenerationSpec(tier=Tier.STANDARD, prompt="a gull", duration=5)


def test_it_is_a_provider() -> None:
    assert isinstance(FakeProvider(), Provider)


def test_a_request_follows_its_timeline_and_is_billed_once(tmp_path: Path) -> None:
    async def go() -> None:
        fake = FakeProvider(scripts=[FakeScript(cost=Decimal("0.50"))])
        await fake.preflight([SPEC])
        sub = await fake.submit(SPEC)
        states = [(await fake.status(sub.request_id)).state for _ in range(4)]
        assert states == [JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED, JobState.COMPLETED]
        result = await fake.result(sub.request_id)
        assert result.cost_usd == Decimal("0.50") and result.video_url is not None
        assert fake.billed == Decimal("0.50") and fake.requests[sub.request_id].charge_count == 1
        clip = await fake.download(result.video_url, tmp_path / "c.mp4", SPEC)
        assert clip.sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest()
        assert fake.preflighted == [SPEC]

    asyncio.run(go())


def test_default_cost_is_the_price_table() -> None:
    async def go() -> Decimal:
        fake = FakeProvider()
        sub = await fake.submit(SPEC)
        return fake.requests[sub.request_id].cost

    assert asyncio.run(go()) == Decimal("0.42")  # 5 s standard without audio at $0.084/s


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (SubmitFault.RATE_LIMITED, RateLimited),
        (SubmitFault.REJECTED, BadRequest),
        (SubmitFault.AUTH, AuthError),
        (SubmitFault.NO_BALANCE, NoBalance),
    ],
)
def test_refused_submits_create_nothing(fault: SubmitFault, error: type[Exception]) -> None:
    fake = FakeProvider(scripts=[FakeScript(submit_fault=fault)])
    with pytest.raises(error):
        asyncio.run(fake.submit(SPEC))
    assert fake.requests == {} and fake.submits == 1


def test_a_lost_answer_creates_a_request_that_runs_and_bills() -> None:
    fake = FakeProvider(scripts=[FakeScript(submit_fault=SubmitFault.LOST)])
    with pytest.raises(SubmitOutcomeUnknown):
        asyncio.run(fake.submit(SPEC))
    [request] = fake.requests.values()
    assert request.charged and not request.answered


def test_failed_generations_are_not_billed_and_downloads_can_fail(tmp_path: Path) -> None:
    async def go() -> None:
        fake = FakeProvider(scripts=[FakeScript(timeline=FAILS), FakeScript(download_failures=1)])
        failed = await fake.submit(SPEC)
        for _ in range(3):
            await fake.status(failed.request_id)
        assert (await fake.result(failed.request_id)).error == "the generation failed"
        done = await fake.submit(SPEC)
        for _ in range(3):
            await fake.status(done.request_id)
        url = (await fake.result(done.request_id)).video_url
        assert url is not None
        with pytest.raises(DownloadIncomplete):
            await fake.download(url, tmp_path / "c.mp4", SPEC)
        assert (await fake.download(url, tmp_path / "c.mp4", SPEC)).attempts == 2
        assert fake.billed == fake.requests[done.request_id].cost

    asyncio.run(go())


def test_only_queued_requests_are_cancelled() -> None:
    async def go() -> tuple[bool, bool]:
        fake = FakeProvider()
        queued = await fake.submit(SPEC)
        running = await fake.submit(SPEC)
        for _ in range(2):
            await fake.status(running.request_id)
        return (await fake.cancel(queued.request_id)).cancelled, (
            await fake.cancel(running.request_id)
        ).cancelled

    assert asyncio.run(go()) == (True, False)


def test_placeholder_frame(tmp_path: Path) -> None:
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"clip")
    placeholder_frame(clip, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes() == b"last frame of clip"


def test_the_fake_shows_its_body_without_network() -> None:
    from pipeline.generation import GenerationSpec, ShotPrompt
    from pipeline.pricing import Tier

    spec = GenerationSpec(Tier.STANDARD, "p", 5, shots=(ShotPrompt("a", 2), ShotPrompt("b", 3)))
    body = FakeProvider().build_body(spec)
    assert body["multi_prompt"] == [{"prompt": "a", "duration": 2}, {"prompt": "b", "duration": 3}]
