"""ffmpeg-python graphs → argument lists, global options first."""

from __future__ import annotations

import ffmpeg as ffmpeg_python

from pipeline.media.command import to_args


def _output() -> object:
    return ffmpeg_python.input("in.mp4").output("out.mp4", vcodec="libx264")


def test_global_options_come_before_the_graph_and_overwrite_is_default() -> None:
    args = to_args(_output(), global_args=["-loglevel", "error"])
    assert args[:4] == ["-nostats", "-y", "-loglevel", "error"]
    assert args[4:] == ["-i", "in.mp4", "-vcodec", "libx264", "out.mp4"]


def test_no_overwrite_leaves_out_y() -> None:
    args = to_args(_output(), overwrite=False)
    assert args[0] == "-nostats"
    assert "-y" not in args
    assert args[-1] == "out.mp4"


def test_every_argument_is_a_string() -> None:
    output = ffmpeg_python.input("in.mp4", t=3).output("out.mp4", r=25)
    args = to_args(output)
    assert all(isinstance(a, str) for a in args)
    assert "25" in args and "3" in args
