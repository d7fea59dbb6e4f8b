"""README.md's settings tables are the ones generated from the settings models."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import README_SECTIONS, settings_table, with_settings_tables

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("section", README_SECTIONS)
def test_the_readme_carries_the_generated_table(section: str) -> None:
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- settings:{section} -->\n", f"<!-- /settings:{section} -->"
    assert start in text and end in text, f"README.md has no {start.strip()} block"
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == settings_table(section), (
        f"README.md's {section} settings table is stale: run python -m pipeline.settings README.md"
    )


def test_the_readme_is_what_the_generator_writes() -> None:
    text = README.read_text(encoding="utf-8")
    assert with_settings_tables(text) == text


def test_a_stale_table_is_noticed() -> None:
    text = README.read_text(encoding="utf-8").replace("`KLINGFLOW_MAX_IN_FLIGHT`", "`KLINGFLOW_MAX_INFLIGHT`")
    assert with_settings_tables(text) != text
    with pytest.raises(ValueError, match="settings:run"):
        with_settings_tables(text.replace("<!-- settings:run -->", ""))


def test_every_variable_is_listed_once() -> None:
    rows = [line for s in README_SECTIONS for line in settings_table(s).splitlines()[2:]]
    names = [row.split("`")[1] for row in rows]
    assert len(names) == len(set(names))
    assert {"RUNCOMFY_TOKEN", "KLINGFLOW_S3_REGION", "KLINGFLOW_RUNS_DIR", "KLINGFLOW_SANDBOX_URL"} <= set(
        names
    )
