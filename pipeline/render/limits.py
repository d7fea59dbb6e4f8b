"""Provider limits inside one process: requests in flight and the submit rate.

The Prefect flow adds global concurrency limits on top (shared by every run on a server);
these local limits keep one process polite on its own, and are what tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Protocol


class Limits(Protocol):
    """What the engine asks before buying: a slot in flight, then a turn to submit."""

    def in_flight(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the provider's in-flight slots while a request is queued or running."""
        ...

    async def before_submit(self) -> None:
        """Wait for a turn under the submit rate."""
        ...

    def slow_down(self, seconds: float) -> None:
        """The provider answered 429: hold every submit back for ``seconds``."""
        ...


class LocalLimits:
    """An asyncio semaphore for requests in flight and a token bucket for submits.

    A 429 (``slow_down``) pushes the next allowed submit back for everybody, so the run slows
    down instead of hammering. Hand-written rather than a library: ~30 lines on asyncio, and
    the Prefect limits it complements are themselves the library choice for sharing.
    """

    def __init__(self, max_in_flight: int, rate_per_s: float, burst: int = 1) -> None:
        self._slots = asyncio.Semaphore(max_in_flight)
        self._rate = rate_per_s
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._stamp = time.monotonic()
        self._not_before = 0.0
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def in_flight(self) -> AsyncIterator[None]:
        async with self._slots:
            yield

    async def before_submit(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
                self._stamp = now
                wait = max(
                    self._not_before - now, (1 - self._tokens) / self._rate if self._tokens < 1 else 0.0
                )
                if wait <= 0:
                    self._tokens -= 1
                    return
                await asyncio.sleep(wait)

    def slow_down(self, seconds: float) -> None:
        self._not_before = max(self._not_before, time.monotonic() + seconds)
