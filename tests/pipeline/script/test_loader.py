"""The loader reports every problem of a script as FILE:LINE: field.path: message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_DATAERR, EXIT_NOINPUT, InputNotFound, ScriptError
from pipeline.script.loader import load_script, parse_script

BROKEN_DIR = Path(__file__).parent / "broken"
BROKEN = sorted(BROKEN_DIR.glob("*.yaml"))


def expectations(path: Path) -> list[tuple[int, str]]:
    """The ``# expect: LINE: path: message`` lines at the top of a broken script."""
    out = []
    for raw in path.read_bytes().decode("latin-1").splitlines():
        if raw.startswith("# expect: "):
            line, _, rest = raw.removeprefix("# expect: ").partition(": ")
            out.append((int(line), rest))
    return out


def test_there_are_at_least_twenty_kinds_of_mistakes() -> None:
    assert len(BROKEN) >= 20
    assert all(expectations(p) for p in BROKEN)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_script_is_reported_with_file_line_and_path(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == EXIT_DATAERR, err
    assert "Traceback" not in err
    for line, rest in expectations(path):
        assert f"{path}:{line}: {rest}" in err, f"missing {line}: {rest!r} in:\n{err}"


def test_many_mistakes_are_all_reported_at_once() -> None:
    with pytest.raises(ScriptError) as info:
        load_script(BROKEN_DIR / "33-many-mistakes.yaml")
    assert len(info.value.problems) == 5
    assert [p.line for p in info.value.problems] == sorted(p.line for p in info.value.problems)


def test_console_script_exits_65_without_traceback(repo_root: Path) -> None:
    for name in ("16-not-utf8.yaml", "17-yaml-syntax.yaml", "33-many-mistakes.yaml"):
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "validate", str(BROKEN_DIR / name)],
            capture_output=True,
            text=True,
            cwd=repo_root,
            check=False,
        )
        assert proc.returncode == EXIT_DATAERR, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"{name}:" in proc.stderr


def test_missing_file_exits_66(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == EXIT_NOINPUT
    assert "nope.yaml: no such file" in capsys.readouterr().err
    with pytest.raises(InputNotFound, match="is a directory"):
        load_script(tmp_path)


def test_examples_validate(example_scripts: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert len(example_scripts) >= 3
    for path in example_scripts:
        assert main(["validate", str(path)]) == 0
        assert capsys.readouterr().out.strip() == "ok"


MINIMAL = """\
version: 1
name: tiny
narratives:
  - id: a
    shots:
      - {duration: 4, action: "%s"}
budget: {limit_usd: 5}
"""


def parse(text: str, base: Path) -> object:
    return parse_script(text.encode(), file="s.yaml", base_dir=base)


def test_minimal_script_gets_the_contract_defaults(tmp_path: Path) -> None:
    loaded = parse_script((MINIMAL % "a bird lands").encode(), file="s.yaml", base_dir=tmp_path)
    s = loaded.script
    assert [v.id for v in s.variants] == ["default"]
    assert s.budget.draft_tier == "standard" and s.budget.final_tier == "pro" and s.budget.select == "all"
    assert s.finals_requested == 1
    assert s.output.archive == "./renders" and s.output.loudness_lufs == -16 and s.output.transition == "cut"
    assert s.subtitles is False  # no dialogue, so no subtitles by default
    settings = s.settings_for(s.narratives[0], s.variants[0])
    assert settings == {
        "aspect_ratio": "16:9",
        "audio": False,
        "negative_prompt": None,
        "cfg_scale": 0.5,
        "style": None,
        "seed": None,
    }
    assert len(loaded.sha256) == 64


def test_settings_precedence_defaults_then_narrative_then_variant(tmp_path: Path) -> None:
    text = """\
version: 1
name: layers
defaults: {aspect_ratio: "9:16", style: base, seed: 1, audio: true}
narratives:
  - id: a
    style: narrative
    shots: [{duration: 4, action: go}]
variants:
  - id: x
  - id: y
    overrides: {style: variant, seed: null}
budget: {limit_usd: 5}
"""
    s = parse_script(text.encode(), file="s.yaml", base_dir=tmp_path).script
    x = s.settings_for(s.narratives[0], s.variants[0])
    y = s.settings_for(s.narratives[0], s.variants[1])
    assert (x["style"], x["seed"], x["aspect_ratio"], x["audio"]) == ("narrative", 1, "9:16", True)
    assert (y["style"], y["seed"]) == ("variant", None)  # an explicit null unsets the seed


@pytest.mark.parametrize(
    "action",
    ["write to mara@example.com about it", "a sign reads @ 5pm"],
)
def test_text_that_is_not_a_mention_passes(tmp_path: Path, action: str) -> None:
    parse_script((MINIMAL % action).encode(), file="s.yaml", base_dir=tmp_path)


def test_free_text_and_at_speakers(tmp_path: Path) -> None:
    text = """\
version: 1
name: speakers
elements:
  mara: {description: "a sailor"}
narratives:
  - id: a
    shots:
      - duration: 4
        action: "@mara talks to an old man"
        dialogue:
          - {speaker: "the old man", line: "Hi"}
          - {speaker: Narrator, line: "Meanwhile"}
          - {speaker: "@mara", line: "Hello"}
          - {speaker: mara, line: "Again"}
budget: {limit_usd: 5}
"""
    parse_script(text.encode(), file="s.yaml", base_dir=tmp_path)


def test_assets_resolve_relative_to_the_script(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("x")
    text = """\
version: 1
name: assets
elements:
  mara: {description: "a sailor", images: [img/a.png, "https://cdn.example.com/m.jpg"], voice: notes.txt}
narratives:
  - id: a
    start_image: img/a.png
    end_image: "http://insecure.example.com/x.png"
    shots: [{duration: 4, action: go}]
budget: {limit_usd: 5}
"""
    with pytest.raises(ScriptError) as info:
        parse_script(text.encode(), file="s.yaml", base_dir=tmp_path)
    messages = [str(p) for p in info.value.problems]
    assert messages == [
        "s.yaml:4: elements.mara.voice: unsupported file type '.txt'; expected one of "
        ".aac, .flac, .m4a, .mp3, .ogg, .wav",
        "s.yaml:8: narratives[0].end_image: must be a local path or an https:// URL "
        "(got 'http://insecure.example.com/x.png')",
    ]


def test_duplicate_keys_are_found_in_nested_mappings(tmp_path: Path) -> None:
    text = """\
version: 1
name: dup
narratives:
  - id: a
    shots:
      - duration: 4
        action: go
        duration: 5
budget: {limit_usd: 5}
"""
    with pytest.raises(
        ScriptError,
        match=r"s.yaml:8: narratives\[0\].shots\[0\].duration: duplicate key 'duration' \(first at line 6\)",
    ):
        parse_script(text.encode(), file="s.yaml", base_dir=tmp_path)


def test_several_documents_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match=r"s\.yaml:9: the file holds several YAML documents"):
        parse_script(((MINIMAL % "go") + "---\nversion: 1\n").encode(), file="s.yaml", base_dir=tmp_path)


def test_budget_must_be_whole_cents(tmp_path: Path) -> None:
    text = (MINIMAL % "go").replace("limit_usd: 5", "limit_usd: 5.005")
    with pytest.raises(ScriptError, match=r"budget.limit_usd: must be in whole cents \(got 5.005\)"):
        parse_script(text.encode(), file="s.yaml", base_dir=tmp_path)
