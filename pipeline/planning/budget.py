"""The budget planner: how many finals, at which tier, fit under ``budget.limit_usd``.

Drafts come first and are never degraded: every variant is drafted at ``draft_tier`` (unless
it is ``none``). Finals are then fitted into what is left, degrading in this documented order
when the budget is short:

1. fewer finals (N, N-1, … 1) at the requested ``final_tier``;
2. then a cheaper final tier (4k → pro → standard), again as many finals as fit.

A final tier never drops below the draft tier, nor to the draft tier when the finals would
then be the drafts again (same tier, same audio). If not even one final fits (or, with
``finals: 0``, not even the drafts), planning fails before any spend with a BudgetError that
says how much the budget falls short.

Which variants' finals are reserved: with ``select: all`` the first N in declared order; with
``auto`` or ``manual`` the choice happens at run time, so the N *most expensive* finals are
reserved (ties in declared order) — whatever is chosen later then fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pipeline.errors import BudgetError, ConfigError
from pipeline.pricing import TIERS_BY_PRICE_DESC, Tier, rate, to_cents

#: final_cost(variant_index, tier) → exact cost of that variant's finals at that tier.
FinalCost = Callable[[int, Tier], Decimal]


@dataclass(frozen=True)
class BudgetDecision:
    """What the budget allows: finals count, tier and which variants they are reserved for."""

    limit: Decimal
    draft_cost: Decimal
    final_tier: Tier | None
    final_variants: tuple[int, ...]
    final_cost: Decimal
    provisional: bool
    degraded: tuple[str, ...]

    @property
    def total(self) -> Decimal:
        """Drafts plus reserved finals, exact."""
        return self.draft_cost + self.final_cost


def _usd(amount: Decimal) -> str:
    return f"${to_cents(amount)}"


def final_tier_candidates(requested: Tier, draft: Tier | None, finals_add_audio: bool) -> list[Tier]:
    """The requested final tier, then cheaper ones the degradation may use, in order."""
    order = list(TIERS_BY_PRICE_DESC)
    start = order.index(requested)
    out = [requested]
    for tier in order[start + 1 :]:
        if draft is not None:
            if order.index(tier) > order.index(draft):
                break  # never below the draft tier
            if tier == draft and not finals_add_audio:
                break  # a final identical to the draft would only re-roll it
        out.append(tier)
    return out


def decide_budget(
    *,
    limit: Decimal,
    draft_cost: Decimal,
    variants: int,
    finals: int,
    select: str,
    final_tier: Tier,
    draft_tier: Tier | None,
    finals_add_audio: bool,
    final_cost: FinalCost,
    tiers: frozenset[Tier] | None = None,
) -> BudgetDecision:
    """Fit drafts and as many finals as possible under ``limit`` (see the module docstring).

    ``tiers``: the tiers the provider sells (all when None); a final tier it does not sell is
    replaced by the next cheaper one it does, said in ``degraded``.
    """
    provisional = select != "all"
    degraded: list[str] = []

    def reserved(tier: Tier, n: int) -> tuple[tuple[int, ...], Decimal]:
        costs = [(final_cost(v, tier), v) for v in range(variants)]
        chosen = sorted(costs, key=lambda cv: (-cv[0], cv[1]))[:n] if provisional else costs[:n]
        return tuple(sorted(v for _, v in chosen)), sum((c for c, _ in chosen), Decimal(0))

    if finals == 0:
        if draft_cost > limit:
            raise BudgetError(
                f"budget.limit_usd is {_usd(limit)} but the drafts alone cost {_usd(draft_cost)}: "
                f"the budget falls short by {_usd(draft_cost - limit)} (nothing was spent)"
            )
        return BudgetDecision(limit, draft_cost, None, (), Decimal(0), provisional, ())

    candidates = final_tier_candidates(final_tier, draft_tier, finals_add_audio)
    if tiers is not None:
        offered = [t for t in candidates if t in tiers]
        if not offered:
            raise ConfigError(
                f"the provider sells none of the final tiers this budget may use "
                f"({', '.join(t.value for t in candidates)}); it sells {', '.join(sorted(t.value for t in tiers))}"
            )
        if offered[0] != final_tier:
            degraded.append(f"final tier {final_tier.value} is not sold by this provider: {offered[0].value}")
            final_tier = offered[0]
        candidates = offered
    for tier in candidates:
        for n in range(finals, 0, -1):
            chosen, cost = reserved(tier, n)
            if draft_cost + cost <= limit:
                if n < finals:
                    degraded.append(f"finals reduced from {finals} to {n} to fit the budget")
                if tier != final_tier:
                    degraded.append(
                        f"final tier lowered from {final_tier.value} to {tier.value} to fit the budget"
                    )
                return BudgetDecision(limit, draft_cost, tier, chosen, cost, provisional, tuple(degraded))

    cheapest_tier = candidates[-1]
    _, one_final = reserved(cheapest_tier, 1)
    cheapest = draft_cost + one_final
    raise BudgetError(
        f"budget.limit_usd is {_usd(limit)} but the cheapest plan costs {_usd(cheapest)} "
        f"(drafts {_usd(draft_cost)} + 1 final at {cheapest_tier.value} {_usd(one_final)}): "
        f"the budget falls short by {_usd(cheapest - limit)} (nothing was spent)"
    )


def segment_costs(tier: Tier, audio: bool, durations: Sequence[int]) -> Decimal:
    """Exact cost of requests of ``durations`` seconds at ``tier``."""
    return rate(tier, audio) * sum(durations)
