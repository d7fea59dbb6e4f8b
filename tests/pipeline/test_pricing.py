"""The price table is the one in the script format."""

from __future__ import annotations

from decimal import Decimal

from pipeline.pricing import Tier, rate, request_cost, to_cents


def test_rates_per_second() -> None:
    assert [rate(t, a) for t in Tier for a in (False, True)] == [
        Decimal("0.084"), Decimal("0.126"), Decimal("0.112"), Decimal("0.168"), Decimal("0.42"), Decimal("0.42"),
    ]  # fmt: skip


def test_request_cost_is_duration_times_rate() -> None:
    assert request_cost(Tier.PRO, 15, True) == Decimal("2.520")
    assert request_cost(Tier.STANDARD, 7, False) == Decimal("0.588")
    assert to_cents(Decimal("0.588")) == Decimal("0.59")
