"""The one price table of Kling 3.0, and the cost of a request.

Money is kept as :class:`~decimal.Decimal` so that sums are exact; it is rounded to the cent
only for display.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum


class Tier(StrEnum):
    """A Kling 3.0 quality tier, in increasing price order."""

    STANDARD = "standard"
    PRO = "pro"
    K4 = "4k"


CENT = Decimal("0.01")

#: USD per generated second, without / with native audio (4k is flat).
PRICE_PER_SECOND: dict[Tier, tuple[Decimal, Decimal]] = {
    Tier.STANDARD: (Decimal("0.084"), Decimal("0.126")),
    Tier.PRO: (Decimal("0.112"), Decimal("0.168")),
    Tier.K4: (Decimal("0.42"), Decimal("0.42")),
}

#: Tiers from the most to the least expensive: the order a short budget degrades finals in.
TIERS_BY_PRICE_DESC: tuple[Tier, ...] = (Tier.K4, Tier.PRO, Tier.STANDARD)


def rate(tier: Tier, audio: bool) -> Decimal:
    """USD per second for ``tier`` with or without audio."""
    without, with_audio = PRICE_PER_SECOND[tier]
    return with_audio if audio else without


def request_cost(tier: Tier, duration: int, audio: bool) -> Decimal:
    """Exact cost of one request: duration × rate."""
    return rate(tier, audio) * duration


def to_cents(amount: Decimal) -> Decimal:
    """Round an amount half-up to the cent, for display."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)
