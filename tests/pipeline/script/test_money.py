"""Money fields of a script: finite, positive, whole cents, at most the ceiling; shown as written."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from pipeline.script.money import MAX_USD, Usd, check_usd, show_number


class _Budget(BaseModel):
    limit_usd: Usd


@pytest.mark.parametrize("value", [0.01, 1.0, 40.5, 40.25, 1_000_000.0])
def test_valid_amounts_pass_unchanged(value: float) -> None:
    assert check_usd(value) == value
    assert _Budget(limit_usd=value).limit_usd == value


@pytest.mark.parametrize(
    ("value", "error_type", "shown"),
    [
        (float("inf"), "usd_finite", ".inf"),
        (float("nan"), "usd_finite", ".nan"),
        (0, "usd_positive", "0"),
        (-5, "usd_positive", "-5"),
        (1_000_000.01, "usd_ceiling", "1000000.01"),
        (1e308, "usd_ceiling", "1e+308"),
        (40.001, "usd_cents", "40.001"),
    ],
)
def test_invalid_amounts_say_why_and_show_the_number_as_written(
    value: float, error_type: str, shown: str
) -> None:
    with pytest.raises(ValidationError) as info:
        _Budget(limit_usd=value)
    (error,) = info.value.errors()
    assert error["type"] == error_type
    assert f"(got {shown})" in error["msg"]


def test_the_ceiling_message_names_the_ceiling() -> None:
    with pytest.raises(ValidationError, match="at most 1,000,000"):
        _Budget(limit_usd=float(MAX_USD) * 2)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(float("-inf"), "-.inf"), (100.0, "100"), (0.001, "0.001"), (1e16, "1e+16"), (2.5, "2.5")],
)
def test_show_number(value: float, shown: str) -> None:
    assert show_number(value) == shown
