"""The ``klingflow`` command-line application object.

Each command group lives in its own module under ``pipeline/cli/`` and exposes
``register(app)``; heavy imports (Prefect, boto3, the sandbox server) happen inside the command
functions so that ``validate`` and ``plan`` start in well under a second.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="klingflow",
    help="Plan, render, stitch and archive Kling 3.0 videos from a YAML render script.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Plan, render, stitch and archive Kling 3.0 videos from a YAML render script."""
