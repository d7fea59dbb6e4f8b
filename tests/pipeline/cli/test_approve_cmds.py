"""``klingflow approve``: variants parsed, and a Prefect server required (resuming a paused
flow run through its API is tested with a server in tests/flows/test_choice.py)."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.cli.approve_cmds import parse_variants
from pipeline.errors import EXIT_CONFIG, EXIT_DATAERR, InputError


def test_parse_variants() -> None:
    assert parse_variants(" a, c ,") == ["a", "c"]
    with pytest.raises(InputError, match="at least one variant"):
        parse_variants(" , ")


def test_approve_needs_a_prefect_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["approve", "some-run", "a"]) == EXIT_CONFIG
    assert "needs a Prefect server" in capsys.readouterr().err
    assert main(["approve", "some-run", ","]) == EXIT_DATAERR
