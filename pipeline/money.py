"""Money inside klingflow is ``Decimal`` USD; this is its one formatter for people.

Prices are whole mills per second, so a request can cost $0.672: shown to people with two
decimals (half up, as the plan rounds), or exactly when a message is about that one amount
(``exact=True``: the mills are kept when cents would round them). JSON outputs keep money as
numbers and do not come through here. The job store keeps integer micro-USD in its columns only
(:mod:`pipeline.store.schema`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def format_usd(amount: Decimal, *, exact: bool = False) -> str:
    """``Decimal("8.4")`` → ``"$8.40"``; with ``exact``, ``Decimal("0.672")`` → ``"$0.672"``.

    Negative amounts keep their sign after the dollar sign's place: ``"-$0.50"``.
    """
    sign = "-" if amount < 0 else ""
    magnitude = abs(amount)
    cents = magnitude.quantize(CENT, rounding=ROUND_HALF_UP)
    if exact and cents != magnitude:
        return f"{sign}${magnitude.normalize():f}"
    return f"{sign}${cents}"


def billing_note(provider: str, planned: Decimal, *, rehearse: bool = False) -> str:
    """Who bills a run and whether money will be spent, said plainly for a plan or a run header.

    ``provider`` is ``sandbox`` or ``runcomfy``; a rehearsal runs RunComfy's code against a
    local sandbox, so it is free too.
    """
    if provider == "sandbox":
        return "provider sandbox (local, free): no money will be spent"
    if rehearse:
        return f"provider {provider}, rehearsed against a local sandbox (free): no money will be spent"
    account = {"runcomfy": "RunComfy"}.get(provider, provider)
    return f"provider {provider} (paid): up to {format_usd(planned)} will be billed to your {account} account"
