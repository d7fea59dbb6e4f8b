"""The command line finds the flows through the installed entry point, never by importing them."""

from __future__ import annotations

import pytest

from pipeline.cli import orchestration as module
from pipeline.errors import EXIT_UNAVAILABLE, StackError


def test_the_installed_flows_are_found() -> None:
    found = module.orchestration()
    assert type(found).__module__ == "flows.commands"
    assert callable(found.render) and callable(found.server_configured)


def test_without_the_flows_the_command_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "entry_points", lambda **_: [])
    with pytest.raises(StackError, match="pip install") as info:
        module.orchestration()
    assert info.value.exit_code == EXIT_UNAVAILABLE
