"""Selection of drafts for finals."""

from __future__ import annotations

import pytest

from pipeline.errors import InputError
from pipeline.render.selection import select_approved, select_auto


def test_auto_takes_passing_variants_in_declared_order() -> None:
    assert select_auto(["a", "b", "c", "d"], {"a": False, "b": True, "c": True, "d": True}, 2) == ["b", "c"]
    assert select_auto(["a", "b"], {"a": False, "b": False}, 2) == []


def test_approved_variants_are_checked() -> None:
    assert select_approved(["a", "b", "c"], ["c", "a"], 2) == ["a", "c"]
    with pytest.raises(InputError, match="unknown variant"):
        select_approved(["a", "b"], ["z"], 2)
    with pytest.raises(InputError, match="the budget allows 1 final"):
        select_approved(["a", "b"], ["a", "b"], 1)
