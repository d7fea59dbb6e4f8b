"""``klingflow archive`` (:mod:`pipeline.cli.archive_cmds`): exit codes and output.

Archiving real masters (S3 and local) is tested in ``tests/pipeline/archive/test_archive_cmds.py``;
this module holds what needs no media.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli.archive_cmds import _human
from pipeline.errors import EXIT_NOINPUT


def test_missing_run_dir_exits_66(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "archive"
    assert main(["archive", str(tmp_path / "no-such-run"), "--to", str(target)]) == EXIT_NOINPUT
    assert "no-such-run" in capsys.readouterr().err
    assert not target.exists()  # nothing written for a run that is not there


def test_run_without_masters_exits_66_and_writes_nothing_locally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "runs" / "empty-0001"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"script": "empty", "run_id": "empty-0001"}))
    target = tmp_path / "archive"
    code = main(["archive", str(run_dir), "--to", str(target)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == EXIT_NOINPUT
    assert "no master to archive" in err
    assert not target.exists()


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1_500_000, "1.5 MB"), (2_000_000_000, "2.0 GB"),
     (5_000_000_000_000, "5000.0 GB")],
)  # fmt: skip
def test_human_sizes(size: int, shown: str) -> None:
    assert _human(size) == shown
