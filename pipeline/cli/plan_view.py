"""The human view of a render plan: a rich table and a summary against the budget."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from pipeline.planning.plan import PlannedRequest, RenderPlan
from pipeline.pricing import to_cents

#: Above this many requests the table shows one row per narrative, variant and pass.
MAX_DETAIL_ROWS = 200


def _money(amount: Decimal) -> str:
    return f"${to_cents(amount):,.2f}"


def _request_table(plan: RenderPlan) -> Table:
    table = Table(
        title=f"Plan of {plan.script}: {len(plan.requests)} requests",
        box=None,
        padding=(0, 1),
        header_style="bold underline",
    )
    for name, justify in [
        ("narrative", "left"), ("variant", "left"), ("pass", "left"), ("seg", "right"), ("tier", "left"),
        ("secs", "right"), ("audio", "center"), ("shots", "right"), ("trim", "right"), ("cost", "right"),
        ("now", "left"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True, min_width=len(name))  # type: ignore[arg-type]
    for r in plan.requests:
        table.add_row(
            r.narrative,
            r.variant + (" *" if r.provisional else ""),
            r.pass_,
            str(r.segment),
            r.tier.value,
            str(r.duration),
            "yes" if r.audio else "-",
            str(r.shots),
            f"{r.trimmed_seconds} s" if r.trimmed_seconds else "",
            _money(r.cost),
            _reuse_or_buy(r),
        )
    return table


def _grouped_table(plan: RenderPlan) -> Table:
    groups: dict[tuple[str, str, str], list[PlannedRequest]] = defaultdict(list)
    for r in plan.requests:
        groups[(r.narrative, r.variant, r.pass_)].append(r)
    table = Table(
        title=f"Plan of {plan.script}: {len(plan.requests)} requests (one row per master)",
        box=None,
        padding=(0, 1),
        header_style="bold underline",
    )
    masters = {n.id: n.master_seconds for n in plan.narratives}
    for name in ("narrative", "variant", "pass", "requests", "tier", "secs", "master", "audio", "cost"):
        justify = "right" if name in {"requests", "secs", "master", "cost"} else "left"
        table.add_column(name, justify=justify, no_wrap=True, min_width=len(name))  # type: ignore[arg-type]
    for (narrative, variant, pass_), reqs in groups.items():
        table.add_row(
            narrative,
            variant + (" *" if reqs[0].provisional else ""),
            pass_,
            str(len(reqs)),
            reqs[0].tier.value,
            str(sum(r.duration for r in reqs)),
            f"{masters[narrative]:g} s",
            "yes" if reqs[0].audio else "-",
            _money(sum((to_cents(r.cost) for r in reqs), Decimal(0))),
        )
    return table


# --- the clip library's part (issue 15): reuse (paid before, $0 now) or buy ------------------


def _reuse_or_buy(request: PlannedRequest) -> str:
    return "reuse" if request.reuse else "buy"


def print_to_spend(console: Console, plan: RenderPlan) -> None:
    """What this run will really buy, when the clip library holds some of its requests."""
    reused = [r for r in plan.requests if r.reuse]
    if reused:
        console.print(
            f"to spend {_money(plan.to_spend_cents):>12}   {len(plan.requests) - len(reused)} to buy, "
            f"{len(reused)} reused from the clip library ({_money(plan.total_cents - plan.to_spend_cents)}"
            " already paid)"
        )


def print_plan(console: Console, plan: RenderPlan) -> None:
    """Print the plan's table, then its totals, degradations and notes."""
    detailed = len(plan.requests) <= MAX_DETAIL_ROWS
    console.print(_request_table(plan) if detailed else _grouped_table(plan))
    for n in plan.narratives:
        joins = len(n.segments) - 1
        fades = n.seconds - n.master_seconds
        how = f", {joins} crossfades of {fades / joins:g} s" if fades and joins else ""
        console.print(f"master   {n.id}: {n.master_seconds:g} s ({n.seconds} s of shots{how})")
    b = plan.budget
    trimmed = sum(r.trimmed_seconds for r in plan.requests)
    console.print(f"drafts   {_money(plan.cents_for('draft')):>12}")
    tier = b.final_tier.value if b.final_tier else "-"
    finals = f"{len(b.final_variants)} of {plan.finals_requested} at {tier}"
    console.print(f"finals   {_money(plan.cents_for('final')):>12}   {finals}")
    left = b.limit - plan.total_cents
    console.print(
        f"total    {_money(plan.total_cents):>12}   of budget {_money(b.limit)}, {_money(left)} left"
        f" (exact ${plan.total:,})"
    )
    print_to_spend(console, plan)
    if trimmed:
        console.print(f"trimmed  {trimmed} s generated beyond the shots (3 s minimum), cut when stitching")
    for note in b.degraded:
        console.print(f"[yellow]degraded:[/] {note}")
    if b.provisional and b.final_variants:
        console.print(
            f"* finals are chosen at run time (select: {plan.select}); the budget reserves the "
            f"{len(b.final_variants)} most expensive"
        )
