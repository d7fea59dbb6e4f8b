"""The contact sheet grid, drawn by ffmpeg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.media import contact_sheet as contact_sheet_module
from pipeline.media.contact_sheet import (
    PreparedRow,
    SheetLayout,
    SheetRow,
    cell_size,
    contact_sheet,
    label_font_size,
    label_text,
    render_row,
    row_args,
    sample_times,
)
from pipeline.media.probe import probe
from pipeline.media.run import ffmpeg


def _rows(clips: list[tuple[Path, float]]) -> list[SheetRow]:
    return [
        SheetRow(clip=str(p), narrative="atlantic", variant="b", segment=i, tier="pro", seconds=s)
        for i, (p, s) in enumerate(clips)
    ]


def test_sheet_has_one_row_per_segment_and_labels(
    mixed_clips: list[tuple[Path, float]], tmp_path: Path
) -> None:
    layout = SheetLayout(columns=4, cell_width=96, label_width=150)
    sheet = contact_sheet(_rows(mixed_clips), tmp_path / "sheet.png", layout)
    video = probe(sheet).video
    assert video is not None
    cell_h = 54  # 96 × 180/320, from the first clip's shape
    assert (video.width, video.height) == (150 + 4 * 96, len(mixed_clips) * cell_h)
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]
    # The label panel holds drawn text: some bright pixels on a dark background.
    raw = tmp_path / "label.gray"
    crop = f"crop=150:{cell_h}:0:0,format=gray"
    ffmpeg(["-y", "-i", str(sheet), "-vf", crop, "-f", "rawvideo", str(raw)])
    pixels = raw.read_bytes()
    bright = sum(1 for v in pixels if v > 180)
    assert 0.01 * len(pixels) < bright < 0.5 * len(pixels)


def test_label_and_sample_times() -> None:
    row = SheetRow(clip="c.mp4", narrative="n", variant="a", segment=2, tier="standard", seconds=5)
    assert label_text(row) == "n / a\nsegment 2\nstandard\n5 s"
    assert sample_times(6, 3) == [1, 3, 5]


def test_row_command_reads_each_thumbnail_with_a_bounded_seek(tmp_path: Path) -> None:
    row = SheetRow(clip="c.mp4", narrative="n", variant="a", segment=0, tier="pro", seconds=4)
    args = row_args(row, 4.0, "/tmp/label.txt", (96, 54), SheetLayout(columns=2), tmp_path / "r.png")
    text = " ".join(args)
    assert "-ss 1.000 -t 1.0 -i c.mp4" in text
    assert "-ss 3.000 -t 1.0 -i c.mp4" in text
    graph = args[args.index("-filter_complex") + 1]
    assert "expansion=none" in graph
    assert "hstack=inputs=3" in graph


def test_a_long_label_line_is_set_smaller_to_fit_the_panel() -> None:
    """Issue 17: captions were cut off at the panel's edge for long narrative/variant ids."""
    short = label_font_size("story / a\nsegment 0", 135, 220)
    long = label_font_size("summer-launch-hero-sequence / variant-b", 135, 220)
    assert short == 16
    assert long < short and long * (0.62 * 39 + 0.5) <= 220


def test_rows_drawn_when_their_clips_arrived_are_stacked_not_drawn_again(
    compatible_clips: list[tuple[Path, float]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = SheetLayout(columns=3, cell_width=96, label_width=150)
    rows = _rows(compatible_clips)
    probes = [probe(r.clip) for r in rows]
    cell = cell_size(probes[0], layout)
    first = render_row(rows[0], probes[0], cell, layout, tmp_path / "row0.png")
    drawn: list[str] = []
    real = contact_sheet_module.render_row

    def counting(row: SheetRow, *args: Any) -> Path:
        drawn.append(row.clip)
        return real(row, *args)

    monkeypatch.setattr(contact_sheet_module, "render_row", counting)
    prepared = [
        PreparedRow(row=rows[0], cell=cell, png=str(first)),
        # Drawn for another cell: not usable on this sheet, drawn again.
        PreparedRow(row=rows[1], cell=(cell[0], cell[1] + 2), png=str(first)),
    ]
    sheet = contact_sheet(rows, tmp_path / "out" / "sheet.png", layout, probes=probes, prepared=prepared)
    assert drawn == [rows[1].clip, rows[2].clip]
    video = probe(sheet).video
    assert video is not None
    assert (video.width, video.height) == (150 + 3 * 96, len(rows) * cell[1])
