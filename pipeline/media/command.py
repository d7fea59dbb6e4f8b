"""Turning an ffmpeg-python graph into an argument list for :func:`pipeline.media.run.ffmpeg`.

ffmpeg-python is untyped and unmaintained: it is used here only to build commands, and this is the
one typed seam between its graphs and the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def to_args(output: Any, *, overwrite: bool = True, global_args: Sequence[str] = ()) -> list[str]:
    """Arguments (without the binary) of an ffmpeg-python output node.

    Global options go first: ffmpeg-python appends them after the output file, where ffmpeg 5.1
    ignores them. ``-nostats`` keeps the captured stderr to what filters and errors print.
    """
    head = ["-nostats", "-y", *global_args] if overwrite else ["-nostats", *global_args]
    return [*head, *(str(a) for a in output.get_args())]
