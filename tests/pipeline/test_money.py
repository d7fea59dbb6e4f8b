"""The one money formatter: two decimals (half up), or exact for a single amount."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline.money import billing_note, format_usd


@pytest.mark.parametrize(
    ("amount", "shown", "exact"),
    [
        ("8.4", "$8.40", "$8.40"),
        ("0.672", "$0.67", "$0.672"),
        ("1.008", "$1.01", "$1.008"),
        ("0.005", "$0.01", "$0.005"),  # half up, as the plan rounds
        ("40", "$40.00", "$40.00"),
        ("0", "$0.00", "$0.00"),
        ("-0.5", "-$0.50", "-$0.50"),
        ("4321.123456", "$4321.12", "$4321.123456"),
    ],
)
def test_format_usd(amount: str, shown: str, exact: str) -> None:
    assert format_usd(Decimal(amount)) == shown
    assert format_usd(Decimal(amount), exact=True) == exact


def test_billing_note_says_plainly_whether_money_is_spent() -> None:
    assert "free" in billing_note("sandbox", Decimal("8.4"))
    assert "no money" in billing_note("runcomfy", Decimal("8.4"), rehearse=True)
    paid = billing_note("runcomfy", Decimal("8.4"))
    assert "paid" in paid and "$8.40 will be billed to your RunComfy account" in paid
