"""A contact sheet: one row of thumbnails per segment, with a label, drawn entirely by ffmpeg.

Each row is one ffmpeg command (a label panel drawn with ``drawtext`` beside ``columns`` frames,
each read with a fast input seek and ``hstack``-ed); a last command ``vstack``s the rows. Doing it
row by row keeps the number of open decoders at ``columns``, whatever the number of segments.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ffmpeg as ffmpeg_builder
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import MediaError
from pipeline.media.command import to_args
from pipeline.media.probe import Probe, probe
from pipeline.media.run import ffmpeg

FONT_FILE = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
SHEET_TIMEOUT_S = 300.0
_BACKGROUND = "0x1e1e1e"
#: Each seek reads this much at most: enough for one frame, never the rest of the clip.
_READ_S = 1.0


class SheetRow(BaseModel):
    """One segment on the sheet: its clip and what the label says about it."""

    model_config = ConfigDict(frozen=True)

    clip: str
    narrative: str
    variant: str
    segment: int
    tier: str
    seconds: float


class SheetLayout(BaseModel):
    """Cell size and count; the label panel is as tall as a cell."""

    model_config = ConfigDict(frozen=True)

    columns: int = Field(default=6, ge=1, le=24)
    cell_width: int = Field(default=240, ge=32)
    label_width: int = Field(default=220, ge=64)


def label_text(row: SheetRow) -> str:
    """The label of a row, one fact per line."""
    return f"{row.narrative} / {row.variant}\nsegment {row.segment}\n{row.tier}\n{row.seconds:g} s"


def label_font_size(text: str, height: int, label_width: int) -> int:
    """A font size at which ``text`` fits the label panel: its lines within the panel's height
    (tall 9:16 rows) and its longest line within its width (long narrative or variant ids), at
    DejaVu Sans' advance of about 0.62 em per character, after the half-em left margin."""
    longest = max((len(line) for line in text.splitlines()), default=1)
    fits_width = int(label_width / (0.62 * longest + 0.5))
    return max(6, min(max(10, min(height // 8, label_width // 10)), fits_width))


def sample_times(duration_s: float, columns: int) -> list[float]:
    """Evenly spread times, each in the middle of its share of the clip."""
    return [duration_s * (i + 0.5) / columns for i in range(columns)]


def _even(n: float) -> int:
    return max(2, int(n) - int(n) % 2)


def row_args(
    row: SheetRow,
    duration_s: float,
    label_file: str | Path,
    cell: tuple[int, int],
    layout: SheetLayout,
    out_png: str | Path,
) -> list[str]:
    """One row: a drawtext label panel and ``columns`` letterboxed frames side by side."""
    width, height = cell
    font_size = label_font_size(label_text(row), height, layout.label_width)
    panel = (
        ffmpeg_builder.input(f"color=c={_BACKGROUND}:s={layout.label_width}x{height}:r=1", f="lavfi")
        .filter(
            "drawtext",
            fontfile=FONT_FILE,
            textfile=str(label_file),
            expansion="none",  # labels are data: never expand %{...} in them
            fontcolor="white",
            fontsize=font_size,
            line_spacing=font_size // 3,
            x=font_size // 2,
            y=font_size // 2,
        )
        .filter("format", "rgb24")
    )  # hstack needs one pixel format across its inputs
    cells: list[Any] = [panel]
    for at in sample_times(duration_s, layout.columns):
        frame = (
            ffmpeg_builder.input(row.clip, ss=f"{at:.3f}", t=_READ_S)["v:0"]
            .filter("trim", end_frame=1)
            .filter("setpts", "PTS-STARTPTS")
            .filter("scale", "iw*sar", "ih")
            .filter("scale", width, height, force_original_aspect_ratio="decrease")
            .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color=_BACKGROUND)
            .filter("setsar", 1)
            .filter("format", "rgb24")
        )
        cells.append(frame)
    stacked = ffmpeg_builder.filter(cells, "hstack", inputs=len(cells))
    return to_args(ffmpeg_builder.output(stacked, str(out_png), vframes=1, update=1))


def stack_args(row_pngs: Sequence[str | Path], out_png: str | Path) -> list[str]:
    """Stack the row images top to bottom into the sheet."""
    rows = [ffmpeg_builder.input(str(p))["v:0"] for p in row_pngs]
    picture = rows[0] if len(rows) == 1 else ffmpeg_builder.filter(rows, "vstack", inputs=len(rows))
    return to_args(ffmpeg_builder.output(picture, str(out_png), vframes=1, update=1))


def cell_size(p: Probe, layout: SheetLayout) -> tuple[int, int]:
    """The cell of a sheet whose first clip is ``p``: ``cell_width`` wide, at its display shape."""
    video = p.video
    if video is None or not video.display_size:
        raise MediaError(f"{p.path}: no video stream for the contact sheet")
    display_w, display_h = video.display_size
    return _even(layout.cell_width), _even(layout.cell_width * display_h / display_w)


def render_row(
    row: SheetRow, p: Probe, cell: tuple[int, int], layout: SheetLayout, out_png: str | Path
) -> Path:
    """One row of a sheet (label and thumbnails of ``row``'s clip, probed as ``p``) as a PNG.

    A run renders each clip's row when the clip arrives (:class:`PreparedRow`), so its master's
    sheet only stacks them.
    """
    if p.video is None:
        raise MediaError(f"{row.clip}: no video stream for the contact sheet")
    out = Path(out_png)
    label_file = out.with_name(f".{out.stem}.label.txt")
    label_file.write_text(label_text(row), encoding="utf-8")
    try:
        ffmpeg(
            row_args(row, p.video_duration, label_file, cell, layout, out),
            timeout=SHEET_TIMEOUT_S,
            what=f"contact sheet row ({row.clip})",
        )
    finally:
        label_file.unlink(missing_ok=True)
    return out


class PreparedRow(BaseModel):
    """A row rendered ahead (when its clip arrived): its PNG, the row and the cell it was drawn in."""

    model_config = ConfigDict(frozen=True)

    row: SheetRow
    cell: tuple[int, int]
    png: str


def contact_sheet(
    rows: Sequence[SheetRow],
    out_png: str | Path,
    layout: SheetLayout | None = None,
    *,
    probes: Sequence[Probe] | None = None,
    prepared: Sequence[PreparedRow] = (),
) -> Path:
    """Write a PNG grid: one row per segment, a label then ``columns`` thumbnails across it.

    Cells take the first clip's shape (its display aspect ratio); other shapes are letterboxed.
    ``probes`` (the clips', in order) spare probing them again; a ``prepared`` row of the same
    label and cell is stacked as it is instead of being drawn again.

    Example::

        contact_sheet(
            [SheetRow(clip="seg0.mp4", narrative="atlantic", variant="a", segment=0, tier="pro", seconds=5)],
            "renders/atlantic-a.png",
        )
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    lay = layout or SheetLayout()
    probed = list(probes) if probes is not None else [probe(r.clip) for r in rows]
    cell = cell_size(probed[0], lay)
    ready = {(r.row, r.cell): Path(r.png) for r in prepared if Path(r.png).is_file()}
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.") as tmp:
        work = Path(tmp)
        row_pngs: list[Path] = []
        for i, (row, p) in enumerate(zip(rows, probed, strict=True)):
            done = ready.get((row, cell))
            row_pngs.append(done if done is not None else render_row(row, p, cell, lay, work / f"row{i}.png"))
        sheet = work / "sheet.png"
        ffmpeg(stack_args(row_pngs, sheet), timeout=SHEET_TIMEOUT_S, what="contact sheet")
        os.replace(sheet, out)
    return out
