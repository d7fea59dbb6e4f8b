"""The command line maps usage errors and klingflow errors to documented exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_USAGE


def test_usage_error_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == EXIT_USAGE
    assert main(["no-such-command"]) == EXIT_USAGE
    assert "Usage" in capsys.readouterr().err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "validate" in out and "plan" in out


def test_plan_table_shows_totals_and_degradation(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(repo_root / "configs/bulk-ab.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Plan of bulk-ab" in out
    assert "of budget $16.00" in out
    assert "degraded: finals reduced from 6 to 3" in out


def test_version_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"klingflow {__version__}"


def test_shell_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    # Typer's completion options leave through sys.exit themselves (the console script's way).
    with pytest.raises(SystemExit) as done:
        main(["--show-completion", "bash"])
    assert done.value.code == 0
    assert "_KLINGFLOW_COMPLETE=complete_bash" in capsys.readouterr().out


def test_an_invalid_choice_is_a_usage_error_listing_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "script.yaml", "--provider", "foo"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "'foo' is not one of" in err and "'sandbox'" in err and "'runcomfy'" in err
