"""Checks of meaning on the raw YAML data: every problem located by line and field path."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import Problem
from pipeline.generation import MENTION_RE
from pipeline.script.checks import MAX_CLIPS_PER_PASS, check_meaning
from pipeline.script.yaml_source import parse_yaml


def _problems(text: str, base: Path) -> list[Problem]:
    return check_meaning(parse_yaml("s.yaml", text.encode()), base)


SHOTS = """\
elements:
  fox: {{images: [fox.png]}}
narratives:
  - id: n1
    shots:
      - action: "{action}"
"""


def test_a_clean_script_has_no_problems(tmp_path: Path) -> None:
    (tmp_path / "fox.png").write_bytes(b"png")
    assert _problems(SHOTS.format(action="@fox runs, mail me@example.com"), tmp_path) == []


def test_an_unknown_mention_is_located_and_a_close_name_suggested(tmp_path: Path) -> None:
    (tmp_path / "fox.png").write_bytes(b"png")
    (problem,) = _problems(SHOTS.format(action="@fxo runs"), tmp_path)
    assert problem.line == 6
    assert "unknown element @fxo" in problem.message
    assert "did you mean 'fox'?" in problem.message


def test_missing_and_wrongly_typed_assets_and_foreign_schemes(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    text = (
        "elements:\n"
        "  a: {images: [missing.png]}\n"
        "  b: {images: [notes.txt]}\n"
        "  c: {images: ['ftp://host/x.png']}\n"
        "  d: {images: ['https://example.com/x.png'], voice: notes.txt}\n"
    )
    messages = {p.line: p.message for p in _problems(text, tmp_path)}
    assert messages[2].startswith("file not found: missing.png")
    assert "unsupported file type '.txt'" in messages[3]
    assert "local path or an https:// URL" in messages[4]
    assert "unsupported file type '.txt'" in messages[5]  # the voice; its https image passes
    assert len(messages) == 4


def test_duplicate_ids_finals_archive_and_size(tmp_path: Path) -> None:
    text = (
        "narratives:\n"
        "  - {id: a, shots: [{action: x}]}\n"
        "  - {id: a, shots: [{action: y}]}\n"
        "variants: [{id: v1}, {id: v2}]\n"
        "budget: {finals: 3}\n"
        "output: {archive: 's3://Bad_Bucket/x'}\n"
    )
    messages = {p.line: p.message for p in _problems(text, tmp_path)}
    assert messages[3] == "duplicate id 'a' (first at line 2)"
    assert messages[5] == "must be at most the number of variants (2) (got 3)"
    assert messages[6] == "'Bad_Bucket' is not a valid S3 bucket name"

    too_many = "narratives:\n  - id: a\n    shots:\n" + "      - {action: x}\n" * (MAX_CLIPS_PER_PASS + 1)
    (problem,) = _problems(too_many, tmp_path)
    assert f"at most {MAX_CLIPS_PER_PASS:,}" in problem.message


def test_mentions_skip_email_addresses() -> None:
    assert [m.group(1) for m in MENTION_RE.finditer("@fox meets @owl-2 at me@mail.com, @@x")] == [
        "fox",
        "owl-2",
    ]
