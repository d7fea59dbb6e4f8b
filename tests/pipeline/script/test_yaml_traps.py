"""YAML 1.1 traps named in the schema's message: base-60 numbers, yes/no booleans, 1e2 as text."""

from __future__ import annotations

import pytest

from pipeline.script.yaml_source import parse_yaml
from pipeline.script.yaml_traps import yaml_trap


def _hint(source: str, key: str, error_type: str) -> str | None:
    doc = parse_yaml("s.yaml", source.encode())
    assert doc.data is not None
    return yaml_trap(doc, (key,), error_type, doc.data[key])


def test_an_unquoted_aspect_ratio_is_named_as_a_base_60_number() -> None:
    hint = _hint("aspect: 16:9\n", "aspect", "literal_error")
    assert hint is not None
    assert "base-60 number (969)" in hint
    assert 'write "16:9" in quotes' in hint


@pytest.mark.parametrize("word", ["yes", "no", "on", "Off"])
def test_yes_no_on_off_are_named_as_booleans(word: str) -> None:
    hint = _hint(f"mode: {word}\n", "mode", "string_type")
    assert hint is not None
    assert f"reads the unquoted {word} as" in hint
    assert f'write "{word}" in quotes' in hint


def test_a_boolean_written_as_true_is_no_trap() -> None:
    assert _hint("mode: true\n", "mode", "string_type") is None


def test_a_number_with_an_exponent_read_as_text_gets_its_plain_form() -> None:
    hint = _hint("limit: 1e2\n", "limit", "float_parsing")
    assert hint is not None
    assert "reads 1e2 as text" in hint
    assert hint.endswith("write 100")
    huge = _hint("limit: 1e999999999\n", "limit", "float_parsing")
    assert huge is not None and huge.endswith("write the number without an exponent")


def test_quoted_or_unrelated_values_get_no_hint() -> None:
    assert _hint('aspect: "16:9"\n', "aspect", "literal_error") is None  # text already
    assert _hint("limit: abc\n", "limit", "float_parsing") is None
    assert _hint("aspect: 16:9\n", "aspect", "greater_than") is None
