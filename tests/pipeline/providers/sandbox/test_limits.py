"""The submit token bucket: burst, refill at ``rate``, and the wait it reports."""

from __future__ import annotations

import pytest

from pipeline.providers.sandbox.limits import TokenBucket


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_a_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)

    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Empty: one token takes 1 / rate seconds to come back.
    assert bucket.take() == pytest.approx(0.5)


def test_a_refused_take_spends_nothing_and_tokens_refill_with_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4.0, burst=1, clock=clock)
    assert bucket.take() == 0.0

    clock.now += 0.125  # half a token back
    assert bucket.take() == pytest.approx(0.125)
    assert bucket.take() == pytest.approx(0.125)  # asking again does not cost anything

    clock.now += 0.125
    assert bucket.take() == 0.0


def test_saved_tokens_never_exceed_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=2, clock=clock)
    bucket.take()
    bucket.take()

    clock.now += 3600.0  # an hour idle refills to the burst, not to 36 000 tokens
    assert [bucket.take() for _ in range(2)] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
