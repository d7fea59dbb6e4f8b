"""The price table is the one in the script format."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline.errors import ConfigError
from pipeline.pricing import (
    Tier,
    price_table,
    provider_rate,
    provider_request_cost,
    rate,
    request_cost,
    to_cents,
)


def test_rates_per_second() -> None:
    assert [rate(t, a) for t in Tier for a in (False, True)] == [
        Decimal("0.084"), Decimal("0.126"), Decimal("0.112"), Decimal("0.168"), Decimal("0.42"), Decimal("0.42"),
    ]  # fmt: skip


def test_request_cost_is_duration_times_rate() -> None:
    assert request_cost(Tier.PRO, 15, True) == Decimal("2.520")
    assert request_cost(Tier.STANDARD, 7, False) == Decimal("0.588")
    assert to_cents(Decimal("0.588")) == Decimal("0.59")


def test_each_provider_prices_by_its_own_table() -> None:
    # fal: the model pages' llms.txt (fal-ai/kling-video/v3/standard/text-to-video and
    # .../v3/pro/image-to-video): $0.084/$0.126/$0.154 standard, $0.112/$0.168/$0.196 pro.
    assert provider_request_cost("fal", Tier.STANDARD, 5, True, voice=True) == Decimal("0.770")
    assert provider_rate("fal", Tier.PRO, audio=True, voice=True) == Decimal("0.196")
    assert provider_rate("fal", Tier.PRO, audio=False, voice=True) == Decimal("0.112")
    # RunComfy and the sandbox keep the historical table; voice has no separate rate there.
    assert provider_rate("sandbox", Tier.PRO, True, voice=True) == rate(Tier.PRO, True)
    assert provider_request_cost("runcomfy", Tier.K4, 10, True) == request_cost(Tier.K4, 10, True)


def test_a_tier_or_provider_without_a_price_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no 4k tier"):
        provider_rate("fal", Tier.K4, False)
    with pytest.raises(ConfigError, match="known are fal, kling, runcomfy, sandbox"):
        price_table("replicate")
