"""The ``klingflow`` command-line application object.

Each command group lives in its own module under ``pipeline/cli/`` and exposes
``register(app)``; heavy imports (Prefect, boto3, the sandbox server) happen inside the command
functions so that ``validate`` and ``plan`` start in well under a second.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline import __version__

app = typer.Typer(
    name="klingflow",
    help="Plan, render, stitch and archive Kling 3.0 videos from a YAML render script.",
    no_args_is_help=True,
    # --install-completion / --show-completion for bash, zsh, fish and PowerShell.
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"klingflow {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Plan, render, stitch and archive Kling 3.0 videos from a YAML render script."""
