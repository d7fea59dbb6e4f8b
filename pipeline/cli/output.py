"""Where the command line writes, so that it scripts well.

Results go to stdout, progress and messages to stderr. A table piped or redirected is laid out
as wide as its content needs: rich would otherwise fit it into 80 columns and cut the ids a
script or a person copies from it (``lighthou…``). ``--json`` outputs are one JSON object on
stdout, money as numbers rounded to the cent.
"""

from __future__ import annotations

import json
import sys
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rich.console import Console

from pipeline.money import CENT

#: Width of a console that is not a terminal: wide enough that no cell is ever cut.
UNLIMITED_WIDTH = 100_000


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that cuts nothing when it is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else UNLIMITED_WIDTH
    return Console(file=stream, stderr=stderr, highlight=False, width=width)


def usd(amount: Decimal | None) -> float | None:
    """Money as a JSON number rounded to the cent (None stays None)."""
    return None if amount is None else float(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def print_json(data: Any) -> None:
    """``data`` as one JSON object on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
