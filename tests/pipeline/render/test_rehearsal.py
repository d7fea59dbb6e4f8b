"""The render rehearsal: masters that cannot be made refuse the run before any money is spent."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from pipeline.errors import EXIT_DATAERR, MediaError, ScriptError
from pipeline.planning.plan import build_plan, plan_narratives
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.render import masters
from pipeline.render.rehearsal import TEMP_PREFIX, master_configs, rehearse_masters, shortened
from pipeline.render.session import open_run
from pipeline.script.loader import load_script, parse_script

from .test_engine import settings_for

# A 15 s shot then a 3 s one: two segments, the second 3 s long.
TOO_LONG_FADE = """\
version: 1
name: fade
narratives:
  - id: n
    shots:
      - {duration: 15, action: "a"}
      - {duration: 3, action: "b"}
budget: {limit_usd: 20}
output:
  transition: crossfade
  crossfade_seconds: 2.0
"""


def _leftovers() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}{os.getpid()}-*"))


def test_a_crossfade_longer_than_half_a_clip_is_refused_naming_the_field(tmp_path: Path) -> None:
    loaded = parse_script(TOO_LONG_FADE.encode(), file="fade.yaml", base_dir=tmp_path)
    with pytest.raises(ScriptError) as caught:
        rehearse_masters(loaded.script, build_plan(loaded.script), document=loaded.document)
    assert caught.value.exit_code == EXIT_DATAERR
    message = str(caught.value)
    assert message.startswith("fade.yaml:11: output.crossfade_seconds: the draft master of narrative 'n'")
    assert "crossfade of 2 s is longer than half the shortest clip (3 s)" in message
    assert not _leftovers()


def test_one_rehearsal_per_distinct_master_configuration(repo_root: Path) -> None:
    script = load_script(repo_root / "configs/bulk-ab.yaml").script
    configs = master_configs(script, build_plan(script))
    # Twelve variants, but drafts differ only by aspect ratio (three), finals by nothing.
    assert sorted((c.pass_, c.aspect_ratio, c.audio) for c in configs) == [
        ("draft", "16:9", False), ("draft", "1:1", False), ("draft", "9:16", False), ("final", "1:1", True),
    ]  # fmt: skip


def test_shortened_segments_keep_parts_lines_and_the_crossfade_inside_each_clip(repo_root: Path) -> None:
    script = load_script(repo_root / "configs/long-form-story.yaml").script
    (real,) = plan_narratives(script)
    short = shortened(real, script)
    assert len(short.segments) == len(real.segments)
    assert short.seconds <= 20 < real.seconds
    for a, b in zip(real.segments, short.segments, strict=True):
        assert [p.lines for p in a.parts] == [p.lines for p in b.parts]
        assert all(p.seconds >= 1 for p in b.parts)
        assert b.content_seconds > 2 * script.output.crossfade_seconds
        assert b.trimmed_seconds == a.trimmed_seconds
    assert short.master_seconds == short.seconds - (len(short.segments) - 1) * 0.5


@pytest.mark.slow
def test_the_long_form_example_rehearses_and_leaves_nothing(repo_root: Path) -> None:
    loaded = load_script(repo_root / "configs/long-form-story.yaml")
    done = rehearse_masters(loaded.script, build_plan(loaded.script), document=loaded.document)
    # Its drafts are silent and its finals audible, crossfaded: the combination of issue 12.
    assert sorted((r.config.pass_, r.config.audio) for r in done) == [("draft", False), ("final", True)]
    assert not _leftovers()


@pytest.mark.slow
def test_a_master_ffmpeg_cannot_make_refuses_the_run_before_any_submit(
    tmp_path: Path, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "broken.yaml"
    script.write_text(
        "version: 1\nname: broken\nnarratives:\n  - id: n\n    shots: [{duration: 4, action: go}]\n"
        "budget: {limit_usd: 5}\noutput: {transition: cut}\n"
    )

    def refuse(*args: object, **kwargs: object) -> None:
        raise MediaError("piece 2 of 3 (crossfade of a into b) wrote 0 audio samples, expected 24000")

    monkeypatch.setattr(masters, "stitch", refuse)
    loaded = load_script(script)
    plan = build_plan(loaded.script)

    async def run() -> None:
        async with open_run(loaded, plan, run_id="r1", settings=settings_for(tmp_path, sandbox)) as session:
            await session.run.execute()

    with pytest.raises(ScriptError) as caught:
        asyncio.run(run())
    assert str(caught.value).startswith(f"{script}:7: output.transition: the draft master of narrative 'n'")
    assert "wrote 0 audio samples" in str(caught.value)
    assert sandbox.ledger() == []  # nothing was submitted, let alone bought
    assert not _leftovers()


CROSSFADE = TOO_LONG_FADE.replace("crossfade_seconds: 2.0", "crossfade_seconds: SECONDS")


@pytest.mark.slow
def test_a_passed_rehearsal_is_not_stitched_again_until_a_setting_changes(tmp_path: Path) -> None:
    cache = tmp_path / "rehearsals"

    def rehearse(seconds: str, archive: str = "renders") -> int:
        text = CROSSFADE.replace("SECONDS", seconds).replace("output:\n", f"output:\n  archive: {archive}\n")
        loaded = parse_script(text.encode(), file="f.yaml", base_dir=tmp_path)
        assert loaded.script.output.archive == archive
        return len(rehearse_masters(loaded.script, build_plan(loaded.script), cache_dir=cache))

    assert rehearse("0.5") > 0  # stitched once, the verdict kept
    assert len(list(cache.iterdir())) == 1
    assert rehearse("0.5") == 0  # same settings: nothing stitched
    assert rehearse("0.5", archive="s3://bucket/elsewhere") == 0  # where masters go changes nothing
    assert rehearse("1.0") > 0  # another crossfade: rehearsed again
    assert len(list(cache.iterdir())) == 2
