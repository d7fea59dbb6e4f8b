"""A run's files: where clips, frames and masters go, and what a killed run leaves behind."""

from __future__ import annotations

from pathlib import Path

from pipeline.providers.download import part_path_for
from pipeline.render.layout import RunLayout, script_reference


def test_partial_downloads_of_a_killed_run_are_removed_and_clips_kept(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    clip = layout.clip("n", "a", "draft", 0)
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"a verified clip")
    part = part_path_for(layout.clip("n", "a", "draft", 1))  # what a download writes first
    part.write_bytes(b"half a clip")
    assert layout.remove_partial_downloads() == [part]
    assert not part.exists() and clip.read_bytes() == b"a verified clip"
    assert RunLayout(tmp_path / "never-ran").remove_partial_downloads() == []


def test_a_run_records_its_script_where_a_reroll_can_find_it_again() -> None:
    assert script_reference("s3://bucket/scripts/a.yaml") == "s3://bucket/scripts/a.yaml"
    assert script_reference("configs/a.yaml") == str(Path("configs/a.yaml").absolute())
    assert Path(script_reference("configs/a.yaml")).is_absolute()
