"""YAML reading keeps a line for every field path."""

from __future__ import annotations

from pipeline.script.yaml_source import format_path, parse_yaml


def test_lines_point_at_keys_and_list_items() -> None:
    doc = parse_yaml("f.yaml", b"a: 1\nb:\n  c: 2\n  d:\n    - x\n    - {e: 3}\n")
    assert doc.problems == []
    assert doc.data == {"a": 1, "b": {"c": 2, "d": ["x", {"e": 3}]}}
    assert doc.lines[("a",)] == 1
    assert doc.lines[("b",)] == 2
    assert doc.lines[("b", "c")] == 3
    assert doc.lines[("b", "d", 1)] == 6
    assert doc.lines[("b", "d", 1, "e")] == 6
    assert doc.line_of(("b", "d", 1, "missing")) == 6


def test_format_path() -> None:
    assert format_path(("narratives", 0, "shots", 2, "duration")) == "narratives[0].shots[2].duration"
    assert format_path(()) == ""


def test_anchors_and_aliases_are_followed() -> None:
    doc = parse_yaml("f.yaml", b"base: &b {x: 1}\nother: *b\n")
    assert doc.data == {"base": {"x": 1}, "other": {"x": 1}}


def test_utf8_with_bom_is_accepted() -> None:
    assert parse_yaml("f.yaml", "\ufeffa: café\n".encode()).data == {"a": "café"}
