"""``flows/commands.py``: the Orchestration the command line finds through its entry point."""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

import pytest

from flows import commands
from pipeline.cli import orchestration as cli_orchestration

_METHODS = (
    "render",
    "server_configured",
    "flow_runs",
    "cancel_flow_runs",
    "deploy",
    "serve",
    "work",
    "resume",
)


def test_entry_point_resolves_to_the_module_object() -> None:
    (entry,) = entry_points(group=cli_orchestration.GROUP, name=cli_orchestration.NAME)
    assert entry.value == "flows.commands:ORCHESTRATION"
    assert entry.load() is commands.ORCHESTRATION
    assert cli_orchestration.orchestration() is commands.ORCHESTRATION


def test_implements_the_protocol_with_the_same_signatures() -> None:
    protocol = cli_orchestration.Orchestration
    ours: cli_orchestration.Orchestration = commands.ORCHESTRATION  # mypy checks the structure too
    for name in _METHODS:
        theirs = inspect.signature(getattr(protocol, name))
        mine = inspect.signature(getattr(type(ours), name))
        assert list(mine.parameters) == list(theirs.parameters), name
        for p, q in zip(mine.parameters.values(), theirs.parameters.values(), strict=True):
            assert p.kind == q.kind, (name, p.name)


def test_server_configured_follows_prefect_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert commands.ORCHESTRATION.server_configured() is False


def test_resume_without_server_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import ConfigError

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ConfigError, match="klingflow resume needs a Prefect server"):
        commands.ORCHESTRATION.resume("some-run")
