"""``klingflow library`` and ``library prune``: size and savings told, reading never creates it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.store.library import LIBRARY_FILE, ClipLibrary


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KLINGFLOW_STORE_URL", raising=False)


def test_no_library_yet_is_said_and_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library"]) == 0
    assert "the clip library is empty" in capsys.readouterr().out
    assert not (tmp_path / "runs" / LIBRARY_FILE).exists()


def test_what_the_library_saved_and_a_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "runs" / "r1" / "clips" / "seg-000.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"x" * 2_000_000)
    library = ClipLibrary.open(f"sqlite:///{tmp_path / 'runs' / LIBRARY_FILE}")
    library.record(
        "id-1", provider="sandbox", body={"model_id": "m"}, file=str(clip), sha256="ab" * 32,
        size=2_000_000, request_id="req-1", cost=Decimal("0.84"), run_id="r1",
    )  # fmt: skip
    library.note_use("id-1", "r2")
    library.close()

    assert main(["library"]) == 0
    out = capsys.readouterr().out
    assert "1 clips (2.0 MB), 0 pruned; $0.84 paid for them" in out
    assert "$0.84 of requests reused (1 reuse)" in out

    assert main(["library", "prune", "--older-than", "30d"]) == 0  # used moments ago: kept
    assert "pruned 0 clips" in capsys.readouterr().out
    assert main(["library", "prune", "--older-than", "0h"]) == 0  # no master uses it
    assert "pruned 1 clips (2.0 MB)" in capsys.readouterr().out
    assert not clip.exists()
    assert main(["library", "prune", "--older-than", "soon"]) == 65
