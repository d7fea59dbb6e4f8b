"""Choosing which drafts are promoted to finals (``budget.select``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.errors import InputError


def select_auto(variants: Sequence[str], passed: Mapping[str, bool], finals: int) -> list[str]:
    """``auto``: variants whose drafts all passed quality checks, in declared order, up to ``finals``."""
    return [v for v in variants if passed.get(v, False)][:finals]


def select_approved(variants: Sequence[str], approved: Sequence[str], finals: int) -> list[str]:
    """``manual``: the approved variants, checked against the script and the budget.

    Raises InputError naming unknown variants, or too many for the finals the budget allows.
    """
    unknown = [v for v in approved if v not in variants]
    if unknown:
        raise InputError(
            f"--approve: unknown variant(s) {', '.join(unknown)}; the script has {', '.join(variants)}"
        )
    chosen = [v for v in variants if v in set(approved)]
    if len(chosen) > finals:
        raise InputError(
            f"--approve: {len(chosen)} variants approved but the budget allows {finals} final(s)"
        )
    return chosen
