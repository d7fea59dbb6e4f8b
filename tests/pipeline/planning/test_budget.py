"""The budget planner degrades in its documented order and fails before spending."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline.errors import BudgetError
from pipeline.planning.budget import decide_budget, final_tier_candidates
from pipeline.pricing import Tier

PRICE = {Tier.K4: Decimal("4.20"), Tier.PRO: Decimal("1.68"), Tier.STANDARD: Decimal("1.26")}


def decide(limit: str, finals: int = 3, select: str = "all", tier: Tier = Tier.PRO, **kw: object) -> object:
    args: dict[str, object] = {
        "limit": Decimal(limit),
        "draft_cost": Decimal("3.00"),
        "variants": 4,
        "finals": finals,
        "select": select,
        "final_tier": tier,
        "draft_tier": Tier.STANDARD,
        "finals_add_audio": True,
        "final_cost": lambda v, t: PRICE[t] + Decimal(v) / 100,
    }
    args.update(kw)
    return decide_budget(**args)  # type: ignore[arg-type]


def test_everything_fits() -> None:
    d = decide("100")
    assert (d.final_tier, d.final_variants, d.degraded) == (Tier.PRO, (0, 1, 2), ())  # type: ignore[attr-defined]


def test_fewer_finals_first() -> None:
    d = decide("6.50")  # 3.00 + 1.68 + 1.69 = 6.37
    assert d.final_tier == Tier.PRO and d.final_variants == (0, 1)  # type: ignore[attr-defined]
    assert d.degraded == ("finals reduced from 3 to 2 to fit the budget",)  # type: ignore[attr-defined]


def test_then_a_cheaper_tier() -> None:
    d = decide("4.50")  # one pro final (1.68) does not fit; one standard final (1.26) does
    assert d.final_tier == Tier.STANDARD and d.final_variants == (0,)  # type: ignore[attr-defined]
    assert d.degraded == (  # type: ignore[attr-defined]
        "finals reduced from 3 to 1 to fit the budget",
        "final tier lowered from pro to standard to fit the budget",
    )


def test_shortfall_is_reported_before_any_spend() -> None:
    with pytest.raises(BudgetError) as info:
        decide("4.00")
    assert str(info.value) == (
        "budget.limit_usd is $4.00 but the cheapest plan costs $4.26 (drafts $3.00 + 1 final at standard $1.26): "
        "the budget falls short by $0.26 (nothing was spent)"
    )


def test_runtime_selection_reserves_the_most_expensive_finals() -> None:
    d = decide("100", finals=2, select="auto")
    assert d.final_variants == (2, 3) and d.provisional  # type: ignore[attr-defined]


def test_no_finals_means_drafts_only() -> None:
    d = decide("3.00", finals=0)
    assert d.final_tier is None and d.total == Decimal("3.00")  # type: ignore[attr-defined]
    with pytest.raises(BudgetError, match=r"the drafts alone cost \$3.00: the budget falls short by \$0.01"):
        decide("2.99", finals=0)


def test_final_tier_never_drops_below_the_draft_tier() -> None:
    assert final_tier_candidates(Tier.K4, Tier.STANDARD, True) == [Tier.K4, Tier.PRO, Tier.STANDARD]
    assert final_tier_candidates(Tier.K4, Tier.PRO, True) == [Tier.K4, Tier.PRO]
    assert final_tier_candidates(Tier.PRO, Tier.STANDARD, False) == [Tier.PRO]  # a standard final = the draft
    assert final_tier_candidates(Tier.PRO, None, False) == [Tier.PRO, Tier.STANDARD]
