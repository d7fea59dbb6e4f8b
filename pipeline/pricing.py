"""The price tables of Kling 3.0 per provider, and the cost of a request.

Money is kept as :class:`~decimal.Decimal` so that sums are exact; it is rounded to the cent
only for display. ``rate``/``request_cost`` are RunComfy's (and the sandbox's, which bills as
RunComfy); ``provider_rate``/``provider_request_cost`` take the provider's name. Where each
table was read, and when, is in :mod:`pipeline.capabilities`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from pipeline.errors import ConfigError


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


@dataclass(frozen=True)
class TierPrice:
    """USD per generated second of one tier at one provider.

    ``with_voice`` is the per-second rate when a request uses a provider voice (voice control,
    audio on); ``None`` where the provider has no separate rate (or no voices).
    """

    without_audio: Decimal
    with_audio: Decimal
    with_voice: Decimal | None = None


def _table(rows: dict[Tier, tuple[str, str, str | None]]) -> dict[Tier, TierPrice]:
    return {
        tier: TierPrice(Decimal(a), Decimal(b), Decimal(v) if v is not None else None)
        for tier, (a, b, v) in rows.items()
    }


#: RunComfy's table (the historical one above), which the sandbox bills by too.
_RUNCOMFY = {tier: TierPrice(a, b) for tier, (a, b) in PRICE_PER_SECOND.items()}

#: Each provider's Kling 3.0 price table (sources and read-on dates: pipeline.capabilities).
PRICE_TABLES: dict[str, dict[Tier, TierPrice]] = {
    "runcomfy": _RUNCOMFY,
    "sandbox": _RUNCOMFY,
    # fal.ai model pages of fal-ai/kling-video/v3/{standard,pro}/*: audio off / on / voice control.
    "fal": _table(
        {
            Tier.STANDARD: ("0.084", "0.126", "0.154"),
            Tier.PRO: ("0.112", "0.168", "0.196"),
        }
    ),
    # Kling's own API bills prepaid resource units; its USD rates per second are an assumption
    # equal to fal's list prices (README: "Providers"), see pipeline.capabilities.
    "kling": _table(
        {
            Tier.STANDARD: ("0.084", "0.126", "0.154"),
            Tier.PRO: ("0.112", "0.168", "0.196"),
        }
    ),
}


def price_table(provider: str) -> dict[Tier, TierPrice]:
    """The price table of ``provider``; ConfigError (78) naming the known ones otherwise."""
    try:
        return PRICE_TABLES[provider]
    except KeyError:
        raise ConfigError(
            f"no price table for provider {provider!r}: known are {', '.join(sorted(PRICE_TABLES))}"
        ) from None


def provider_rate(provider: str, tier: Tier, audio: bool, voice: bool = False) -> Decimal:
    """USD per second at ``provider`` for ``tier``; ``voice`` (with audio) uses the voice rate.

    ConfigError (78) when the provider does not sell ``tier``.
    """
    table = price_table(provider)
    price = table.get(tier)
    if price is None:
        offered = ", ".join(t.value for t in table)
        raise ConfigError(f"provider {provider!r} has no {tier.value} tier (it offers {offered})")
    if audio and voice and price.with_voice is not None:
        return price.with_voice
    return price.with_audio if audio else price.without_audio


def provider_request_cost(
    provider: str, tier: Tier, duration: int, audio: bool, voice: bool = False
) -> Decimal:
    """Exact cost of one request at ``provider``: duration × that provider's rate."""
    return provider_rate(provider, tier, audio, voice) * duration


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
