"""``klingflow library`` and ``klingflow library prune``: the clip library's size, savings and
housekeeping. Neither buys anything (:mod:`pipeline.render.housekeeping`)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.output import console
from pipeline.money import format_usd

library_app = typer.Typer(
    help="The clip library: every paid clip, reused by any run that asks for the same request.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@library_app.callback()
def show(ctx: typer.Context) -> None:
    """Show the library's size and what it saved ("$X of requests reused").

    Example: klingflow library
    """
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.render.housekeeping import saved_line
    from pipeline.settings import load_settings
    from pipeline.store.library import ClipLibrary, library_exists, library_url

    run = load_settings().run
    url = library_url(run.runs_dir, run.store_url)
    out = console()
    if not library_exists(url):
        out.print(f"the clip library is empty: no run under {run.runs_dir} has bought a clip", markup=False)
        return
    library = ClipLibrary.open(url)
    try:
        stats = library.stats()
    finally:
        library.close()
    out.print(
        f"{stats.clips - stats.gone} clips ({stats.size_bytes / 1e6:,.1f} MB), {stats.gone} pruned; "
        f"{format_usd(stats.paid)} paid for them",
        markup=False,
    )
    out.print(saved_line(stats.saved, stats.reuses), markup=False)


@library_app.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only clips unused this long: 30d, 12h, 2w.")
    ] = "30d",
) -> None:
    """Remove the files of clips no master uses any more (their records stay, marked gone).

    A pruned request is bought again by the next run that needs it.

    Example: klingflow library prune --older-than 30d
    """
    from pipeline.render.housekeeping import parse_age
    from pipeline.render.housekeeping import prune as prune_library
    from pipeline.settings import load_settings
    from pipeline.store.library import ClipLibrary, library_url

    age = parse_age(older_than)
    run = load_settings().run
    library = ClipLibrary.open(library_url(run.runs_dir, run.store_url))
    try:
        pruned = prune_library(library, run.runs_dir, age)
    finally:
        library.close()
    console().print(
        f"pruned {pruned.clips} clips ({pruned.bytes / 1e6:,.1f} MB); {pruned.kept_in_use} kept: a master uses them",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``library`` (and ``library prune``) to ``app``."""
    app.add_typer(library_app, name="library")
