"""The format contract ships with the code: ``docs/script-format.md`` is the shared one, verbatim."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "docs" / "script-format.md"


def test_the_shipped_format_contract_is_the_shared_one() -> None:
    if not SHARED.is_file():
        pytest.skip(f"{SHARED} is not beside this checkout (only the product repository is here)")
    assert (ROOT / "docs" / "script-format.md").read_text(encoding="utf-8") == SHARED.read_text(
        encoding="utf-8"
    ), "docs/script-format.md differs from the shared contract: copy ../shared/docs/script-format.md over it"
