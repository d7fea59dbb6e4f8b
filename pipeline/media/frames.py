"""Single frames out of a clip: its last frame (the next segment's start image) and thumbnails."""

from __future__ import annotations

from pathlib import Path

import ffmpeg as ffmpeg_builder

from pipeline.errors import MediaError
from pipeline.media.command import to_args
from pipeline.media.run import ffmpeg

FRAME_TIMEOUT_S = 120.0
#: How far before the end to start decoding for the last frame: more than a frame at any rate we
#: meet, little enough to decode fast even at 1080p.
LAST_FRAME_WINDOW_S = 0.5


def last_frame_args(clip: str | Path, out_png: str | Path) -> list[str]:
    """Decode the last half second and keep overwriting one image: what remains is the last frame."""
    source = ffmpeg_builder.input(str(clip), sseof=f"-{LAST_FRAME_WINDOW_S}")
    return to_args(ffmpeg_builder.output(source["v:0"], str(out_png), update=1, **{"q:v": 2}))


def thumbnail_args(clip: str | Path, at_s: float, out_png: str | Path, width: int) -> list[str]:
    """Seek to ``at_s`` (fast input seek, then exact decode) and scale one frame to ``width``."""
    if width < 2:
        raise ValueError(f"thumbnail width must be at least 2 (got {width})")
    source = ffmpeg_builder.input(str(clip), ss=f"{max(0.0, at_s):.3f}")
    # -2 keeps the aspect ratio with an even height; square pixels first for anamorphic sources.
    frame = source["v:0"].filter("scale", "iw*sar", "ih").filter("scale", width, -2).filter("setsar", 1)
    return to_args(ffmpeg_builder.output(frame, str(out_png), vframes=1))


def _written(out: Path, what: str, stderr: str) -> Path:
    # ffmpeg exits 0 without writing anything when the seek lands past the last frame.
    if not out.is_file() or out.stat().st_size == 0:
        raise MediaError(f"{what}: no frame was written to {out}", stderr_tail=stderr[-2000:])
    return out


def last_frame(clip: str | Path, out_png: str | Path) -> Path:
    """Write the last video frame of ``clip`` as a PNG and return its path.

    Example::

        last_frame("renders/seg0.mp4", "work/seg1_start.png")
    """
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    stderr = ffmpeg(last_frame_args(clip, out), timeout=FRAME_TIMEOUT_S, what=f"last frame of {clip}")
    return _written(out, f"last frame of {clip}", stderr)


def thumbnail(clip: str | Path, at_s: float, out_png: str | Path, width: int = 320) -> Path:
    """Write the frame of ``clip`` at ``at_s`` seconds, ``width`` pixels wide, as a PNG."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    stderr = ffmpeg(
        thumbnail_args(clip, at_s, out, width), timeout=FRAME_TIMEOUT_S, what=f"thumbnail of {clip}"
    )
    return _written(out, f"thumbnail of {clip} at {at_s:g} s", stderr)
