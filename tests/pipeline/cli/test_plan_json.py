"""``klingflow plan --json`` parses, names the provider, and prints the plan when the budget
falls short too (``"fits": false``, exit 3 kept)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli.plan_json import planned_provider
from pipeline.errors import EXIT_BUDGET

SCRIPT = """\
version: 1
name: {name}
defaults: {{audio: false}}
narratives:
  - id: kite
    shots: [{{duration: 6, action: "one red kite over a grey sea"}}]
budget: {{limit_usd: {limit}, finals: 0}}
"""


@pytest.fixture(autouse=True)
def no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    monkeypatch.setenv("KLINGFLOW_PROVIDER_TOKEN_FILE", str(tmp_path / "no-token.json"))


def _plan_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: str, code: int
) -> dict[str, object]:
    script = tmp_path / "kite.yaml"
    script.write_text(SCRIPT.format(name="kite", limit=limit))
    assert main(["plan", str(script), "--json"]) == code
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def test_plan_json_that_fits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _plan_json(tmp_path, capsys, "5.00", 0)
    assert data["fits"] is True and data["shortfall"] is None
    assert data["provider"] == "sandbox" and "no money will be spent" in str(data["billing"])
    assert data["total_usd"] == 0.5 and data["budget_usd"] == 5.0


def test_plan_json_when_the_budget_falls_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _plan_json(tmp_path, capsys, "0.10", EXIT_BUDGET)
    assert data["fits"] is False and "falls short by $0.40" in str(data["shortfall"])
    assert data["budget_usd"] == 0.1 and data["total_usd"] == 0.5
    assert data["remaining_usd"] == pytest.approx(-0.4)
    assert len(data["requests"]) == 1  # type: ignore[arg-type]


def test_the_plan_table_names_the_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "kite.yaml"
    script.write_text(SCRIPT.format(name="kite", limit="5.00"))
    assert main(["plan", str(script)]) == 0
    assert "provider sandbox (local, free): no money will be spent" in capsys.readouterr().out


def test_the_planned_provider_follows_the_script_then_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert planned_provider("runcomfy") == "runcomfy"
    assert planned_provider(None) == "sandbox"
    monkeypatch.setenv("RUNCOMFY_TOKEN", "t0ken")
    assert planned_provider(None) == "runcomfy"
