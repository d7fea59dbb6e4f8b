"""``klingflow plan --json``: the plan as one JSON object, also when the budget falls short.

A script whose budget cannot pay even the cheapest plan still gets its plan printed — the one
the script asks for, with ``"fits": false`` and the shortfall — so that a script reading stdout
sees why; the exit code stays 3 (the error is raised after the JSON is written).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.capabilities import CAPABILITIES
from pipeline.cli.plan_bodies import add_bodies
from pipeline.errors import BudgetError, KlingflowError
from pipeline.money import billing_note
from pipeline.planning.plan import PaidCheck, build_plan, plan_to_dict
from pipeline.script.model import Script

#: The limit a short budget's plan is built under, to show what the script asks for.
UNBOUNDED_USD = 1_000_000_000.0


def planned_provider(requested: str | None) -> str:
    """The provider a run would use: the script's, else RunComfy with a token, else the sandbox.

    The same rule as the run's (:func:`pipeline.providers.selection.choose_provider`), without
    importing the provider clients; settings that cannot be read make it ``unknown`` here (the
    run itself will say what is wrong with them).
    """
    if requested is not None:
        return str(requested)
    from pipeline.settings import load_settings

    try:
        return "runcomfy" if load_settings().provider.has_token else "sandbox"
    except KlingflowError:
        return "unknown"


def print_plan_json(
    script: Script, provider: str, paid: PaidCheck | None = None, *, base_dir: Path | None = None
) -> None:
    """Write the plan of ``script`` as one JSON object on stdout; BudgetError after it when short.

    ``paid``: the clip library's answer (``reuse`` per request, ``to_spend_usd``). Requests are
    compiled for ``provider``; with ``base_dir`` (the script's folder) each request also shows
    the exact ``body`` its adapter would submit (:mod:`pipeline.cli.plan_bodies`)."""
    shortfall: BudgetError | None = None
    compiled_for = provider if provider in CAPABILITIES else None

    def planned(s: Script) -> dict[str, Any]:
        render_plan = build_plan(s, paid, provider=compiled_for)
        out = plan_to_dict(render_plan)
        if base_dir is not None:
            add_bodies(out["requests"], render_plan.requests, base_dir)
            add_bodies(out["candidate_finals"], render_plan.candidate_finals, base_dir)
        return out

    try:
        data = planned(script)
    except BudgetError as exc:
        shortfall = exc
        unbounded = script.model_copy(
            update={"budget": script.budget.model_copy(update={"limit_usd": UNBOUNDED_USD})}
        )
        data = planned(unbounded)
        limit = Decimal(str(script.budget.limit_usd))
        data["budget_usd"] = float(limit)
        data["remaining_usd"] = float(limit - Decimal(str(data["total_usd"])))
    extra: dict[str, Any] = {
        "fits": shortfall is None,
        "shortfall": str(shortfall) if shortfall is not None else None,
        "provider": provider,
        "billing": billing_note(provider, Decimal(str(data["total_usd"]))),
    }
    # dumps, not dump: json.dump streams through the pure-Python encoder (10x slower).
    sys.stdout.write(json.dumps({**extra, **data}, indent=2) + "\n")
    sys.stdout.flush()
    if shortfall is not None:
        raise shortfall
