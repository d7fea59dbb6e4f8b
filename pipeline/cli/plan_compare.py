"""``klingflow plan SCRIPT --compare``: the same script's cost on every real provider, side by side.

One row per provider (RunComfy, fal, Kling): the plan's total as that provider prices it, and
what it would drop compared with the script (``elements: description only``, ``voice:
dropped``, ``storyboard: prose``, a tier it does not sell …). A budget too short for a
provider's plan still gets a row: the total the script asks for, marked as not fitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.capabilities import capabilities_for
from pipeline.errors import BudgetError, PromptTooLong
from pipeline.planning.plan import RenderPlan, build_plan
from pipeline.script.model import Script

#: The providers that sell generations (the sandbox bills as RunComfy and is left out).
REAL_PROVIDERS: tuple[str, ...] = ("runcomfy", "fal", "kling")

#: The limit a short budget's plan is built under, to price what the script asks for.
_UNBOUNDED_USD = 1_000_000_000.0


@dataclass(frozen=True)
class ProviderRow:
    """One provider's line of the comparison."""

    provider: str
    total_usd: Decimal | None
    drops: tuple[str, ...]
    fits: bool
    #: Why there is no total (a prompt over this provider's limit), else None.
    error: str | None = None
    prices_published: bool = True


def _drops(script: Script, plan: RenderPlan) -> tuple[str, ...]:
    caps = capabilities_for(plan.provider)
    drops = list(plan.drops)
    tiers = [script.budget.final] + ([script.budget.draft] if script.budget.draft is not None else [])
    drops += [f"tier {t.value}: not sold" for t in tiers if t not in caps.tiers]
    if not caps.seed and any(r.seed is not None for r in plan.requests):
        drops.append("seed: ignored")
    return tuple(dict.fromkeys(drops))


def compare_row(script: Script, provider: str) -> ProviderRow:
    """The comparison row of ``provider`` for ``script``."""
    published = capabilities_for(provider).prices_published
    fits = True
    try:
        try:
            plan = build_plan(script, provider=provider)
        except BudgetError:
            fits = False
            unbounded = script.model_copy(
                update={"budget": script.budget.model_copy(update={"limit_usd": _UNBOUNDED_USD})}
            )
            plan = build_plan(unbounded, provider=provider)
    except PromptTooLong as exc:
        return ProviderRow(provider, None, (), False, str(exc), published)
    return ProviderRow(provider, plan.total_cents, _drops(script, plan), fits, None, published)


def compare(script: Script, providers: tuple[str, ...] = REAL_PROVIDERS) -> list[ProviderRow]:
    """One row per provider, in ``providers`` order."""
    return [compare_row(script, p) for p in providers]


def compare_to_dict(rows: list[ProviderRow]) -> dict[str, Any]:
    """``plan --compare --json``: ``{"providers": [{"provider", "total_usd", "drops"}, …]}``."""
    return {
        "providers": [
            {
                "provider": r.provider,
                "total_usd": float(r.total_usd) if r.total_usd is not None else None,
                "drops": list(r.drops),
                "fits": r.fits,
                "error": r.error,
                "prices_published": r.prices_published,
            }
            for r in rows
        ]
    }


def print_compare(console: Console, script: Script, rows: list[ProviderRow]) -> None:
    """The comparison as a table, one row per provider."""
    table = Table(
        title=f"{script.name} on every provider (budget ${script.budget.limit_usd:,.2f})",
        box=None,
        padding=(0, 1),
        header_style="bold underline",
    )
    table.add_column("provider", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    table.add_column("fits", justify="center", no_wrap=True)
    table.add_column("drops")
    for r in rows:
        total = f"${r.total_usd:,.2f}" if r.total_usd is not None else "-"
        if not r.prices_published:
            total += " (assumed)"
        what = r.error if r.error is not None else ("; ".join(r.drops) or "nothing")
        table.add_row(r.provider, total, "yes" if r.fits else "no", what)
    console.print(table)
