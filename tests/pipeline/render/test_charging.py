"""ChargeWhenFinished: a completed result is charged before it is returned; all else delegated."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers.base import JobState, ResultInfo
from pipeline.providers.fake import FakeProvider, FakeScript
from pipeline.render.charging import ChargeWhenFinished, charge_when_finished

SPEC = GenerationSpec(tier=Tier.STANDARD, prompt="a gull", duration=5)


class _PollingFake(FakeProvider):
    """A fake whose waits look at the result itself (the optional ``poll_result``)."""

    async def poll_result(self, request_id: str) -> ResultInfo:
        return await self.result(request_id)


def test_the_charge_is_recorded_before_the_completed_result_is_returned(tmp_path: Path) -> None:
    fake = FakeProvider(scripts=[FakeScript(cost=Decimal("0.50"))])
    seen: list[str] = []

    async def on_completed(result: ResultInfo) -> None:
        seen.append(f"charged {result.request_id} {result.cost_usd}")

    async def go() -> None:
        wrapped = charge_when_finished(fake, on_completed)
        assert wrapped.name == "fake"
        sub = await wrapped.submit(SPEC)
        # Not completed yet: a look at the status or an early result charges nothing.
        assert (await wrapped.status(sub.request_id)).state is JobState.QUEUED
        assert seen == []
        while (await wrapped.status(sub.request_id)).state is not JobState.COMPLETED:
            pass
        result = await wrapped.result(sub.request_id)
        assert seen == [f"charged {sub.request_id} 0.50"]
        assert result.video_url is not None
        clip = await wrapped.download(result.video_url, tmp_path / "c.mp4", SPEC)
        assert clip.path.is_file()
        await wrapped.aclose()
        assert not fake.closed  # the wrapped provider belongs to the caller

    asyncio.run(go())


def test_a_result_that_is_not_completed_charges_nothing() -> None:
    fake = FakeProvider(scripts=[FakeScript(timeline=(JobState.QUEUED,))])
    calls: list[ResultInfo] = []

    async def on_completed(result: ResultInfo) -> None:
        calls.append(result)

    async def go() -> None:
        wrapped = charge_when_finished(fake, on_completed)
        sub = await wrapped.submit(SPEC)
        await wrapped.status(sub.request_id)
        result = await wrapped.result(sub.request_id)
        assert result.state is not JobState.COMPLETED

    asyncio.run(go())
    assert calls == []


def test_the_wrapper_offers_poll_result_exactly_when_the_provider_does() -> None:
    async def nothing(_result: ResultInfo) -> None:
        return None

    plain = charge_when_finished(FakeProvider(), nothing)
    assert isinstance(plain, ChargeWhenFinished)
    assert not callable(getattr(plain, "poll_result", None))

    fake = _PollingFake()
    charged: list[str] = []

    async def on_completed(result: ResultInfo) -> None:
        charged.append(result.request_id)

    polling = charge_when_finished(fake, on_completed)
    poll = getattr(polling, "poll_result", None)
    assert callable(poll)

    async def go() -> None:
        sub = await polling.submit(SPEC)
        while (await polling.status(sub.request_id)).state is not JobState.COMPLETED:
            pass
        await poll(sub.request_id)
        assert charged == [sub.request_id]

    asyncio.run(go())
