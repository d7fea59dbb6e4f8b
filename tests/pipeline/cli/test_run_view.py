"""What ``klingflow run`` shows: a header naming who bills, bars that say reserved money, the
wait for a choice, and the outcome as one JSON object."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.cli.run_view import RunProgress, header, outcome_to_dict, print_summary
from pipeline.planning.plan import build_plan
from pipeline.render.progress import MasterLine, RunOutcome
from pipeline.script.loader import load_script
from pipeline.store.jobs import Spend


def _outcome() -> RunOutcome:
    return RunOutcome(
        run_id="r1",
        script="kite",
        delivered=True,
        selected=("a",),
        charged_usd=Decimal("8.4"),
        reserved_usd=Decimal(0),
        limit_usd=Decimal(15),
        masters=(MasterLine("n", "a", "draft", "/runs/r1/m.mp4", 6.0, True, None),),
        jobs_not_completed=(),
        archive="/archive",
        archive_error=None,
        archive_refused=(),
        report="/runs/r1/report.html",
        run_dir="/runs/r1",
    )


def test_summary_money_has_two_decimals(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary(_outcome())
    assert "spend: $8.40 charged of $15.00" in capsys.readouterr().out


def test_run_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary(_outcome(), as_json=True, provider="sandbox")
    data = json.loads(capsys.readouterr().out)
    assert data["provider"] == "sandbox" and data["charged_usd"] == 8.4 and data["limit_usd"] == 15.0
    assert data["masters"][0]["pass"] == "draft" and data["selected"] == ["a"]
    assert outcome_to_dict(_outcome())["delivered"] is True


def test_header_names_the_provider_and_the_money(repo_root: Path) -> None:
    plan = build_plan(load_script(str(repo_root / "configs/bulk-ab.yaml")).script)
    line = header("r1", plan, "runcomfy", rehearse=False)
    assert "$15.12 of $16.00" in line and "up to $15.12 will be billed to your RunComfy account" in line
    assert "free" in header("r1", plan, "sandbox", rehearse=False)


def test_bars_say_reserved_money_and_the_wait() -> None:
    stream = io.StringIO()
    view = RunProgress(Console(file=stream, width=200), [], Decimal(15))
    view.on_spend(Spend(Decimal(15), Decimal("1.2"), Decimal("8.4")))
    detail = view.progress.tasks[0].fields["detail"]
    assert detail == "$8.40 charged, $1.20 reserved of $15.00"
    view.on_waiting("waiting for your choice: klingflow approve r1 a,c")
    assert "klingflow approve r1 a,c" in stream.getvalue()
    assert "waiting for your choice" in view.progress.tasks[0].fields["detail"]
