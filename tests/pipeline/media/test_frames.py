"""Last frame and thumbnails, checked by the colour of the pixels ffmpeg wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import MediaError
from pipeline.media.frames import last_frame, last_frame_args, thumbnail, thumbnail_args
from pipeline.media.probe import probe
from pipeline.media.run import ffmpeg


def _mean_rgb(png: Path, tmp_path: Path) -> tuple[int, int, int]:
    raw = tmp_path / f"{png.stem}.rgb"
    ffmpeg(
        ["-y", "-i", str(png), "-vf", "scale=1:1:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw)]
    )
    r, g, b = raw.read_bytes()[:3]
    return r, g, b


@pytest.fixture(scope="module")
def red_then_blue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frames") / "red_blue.mp4"
    ffmpeg(
        [
            "-y",
            *("-f", "lavfi", "-i", "color=c=red:s=160x90:r=24:d=1.5"),
            *("-f", "lavfi", "-i", "color=c=blue:s=160x90:r=24:d=1.5"),
            *("-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)),
        ]
    )
    return out


def test_last_frame_is_the_final_picture(red_then_blue: Path, tmp_path: Path) -> None:
    png = last_frame(red_then_blue, tmp_path / "sub" / "last.png")
    r, g, b = _mean_rgb(png, tmp_path)
    assert b > 200, (r, g, b)
    assert r < 60, (r, g, b)


def test_thumbnail_is_taken_at_the_time_and_width_asked(red_then_blue: Path, tmp_path: Path) -> None:
    png = thumbnail(red_then_blue, 0.5, tmp_path / "t.png", width=80)
    r, _, b = _mean_rgb(png, tmp_path)
    assert r > 200
    assert b < 60
    video = probe(png).video
    assert video is not None
    assert (video.width, video.height) == (80, 46)  # 80 × 90/160 = 45, rounded to even


def test_a_thumbnail_past_the_end_is_a_media_error(red_then_blue: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no frame"):
        thumbnail(red_then_blue, 60.0, tmp_path / "t.png")


def test_frame_commands_are_built_as_expected() -> None:
    assert last_frame_args("c.mp4", "l.png") == [
        "-nostats",
        "-y",
        "-sseof",
        "-0.5",
        "-i",
        "c.mp4",
        "-map",
        "0:v:0",
        "-q:v",
        "2",
        "-update",
        "1",
        "l.png",
    ]
    args = thumbnail_args("c.mp4", 2.25, "t.png", 320)
    assert args[args.index("-ss") + 1] == "2.250"
    assert "scale=320:-2" in args[args.index("-filter_complex") + 1]
    with pytest.raises(ValueError, match="width"):
        thumbnail_args("c.mp4", 0, "t.png", 0)
