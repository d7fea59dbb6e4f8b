"""Local provider limits: never more in flight than allowed; a 429 pushes submits back."""

from __future__ import annotations

import asyncio
import itertools
import time

from pipeline.render.limits import LocalLimits


def test_in_flight_never_exceeds_the_limit() -> None:
    limits = LocalLimits(max_in_flight=3, rate_per_s=1000, burst=100)
    active = 0
    peak = 0

    async def job() -> None:
        nonlocal active, peak
        async with limits.in_flight():
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1

    async def main() -> None:
        await asyncio.gather(*(job() for _ in range(20)))

    asyncio.run(main())
    assert peak == 3


def test_submits_follow_the_rate_and_a_slow_down() -> None:
    limits = LocalLimits(max_in_flight=10, rate_per_s=50, burst=1)
    stamps: list[float] = []

    async def main() -> None:
        for _ in range(5):
            await limits.before_submit()
            stamps.append(time.monotonic())
        limits.slow_down(0.2)
        await limits.before_submit()
        stamps.append(time.monotonic())

    asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(g >= 0.015 for g in gaps[:4])  # ~1/50 s apart (bucket of one)
    assert gaps[4] >= 0.19  # held back by the 429
