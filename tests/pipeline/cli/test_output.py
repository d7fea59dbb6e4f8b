"""Output that scripts well: piped tables cut nothing; JSON money rounded to the cent."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rich.table import Table

from pipeline.cli.output import UNLIMITED_WIDTH, console, print_json, usd


def test_a_piped_console_cuts_no_cell(capsys: pytest.CaptureFixture[str]) -> None:
    out = console()
    assert out.width == UNLIMITED_WIDTH  # capsys' stdout is no terminal
    cell = "x" * 300
    table = Table("id", "more")
    table.add_row(cell, "y" * 100)
    out.print(table)
    assert cell in capsys.readouterr().out


def test_usd_rounds_to_the_cent_and_keeps_none() -> None:
    assert usd(Decimal("8.4")) == 8.4
    assert usd(Decimal("0.672")) == 0.67
    assert usd(Decimal("0.675")) == 0.68  # half up, as the plan rounds
    assert usd(None) is None


def test_print_json_writes_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"a": 1, "when": Decimal("1.5")})
    assert json.loads(capsys.readouterr().out) == {"a": 1, "when": "1.5"}
