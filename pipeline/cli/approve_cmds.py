"""``klingflow approve RUN a,c``: choose the finals of a run waiting in Prefect, from any shell.

A ``select: manual`` run on a Prefect server pauses after its drafts until someone chooses; its
terminal names this command. It resumes the paused flow run through the Prefect API with the
chosen variants, exactly as the form in the Prefect UI does.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.orchestration import orchestration
from pipeline.cli.output import console
from pipeline.cli.run_cmds import prefect_env
from pipeline.errors import InputError


def parse_variants(text: str) -> list[str]:
    """``"a, c"`` → ``["a", "c"]``; InputError when nothing is named."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    if not variants:
        raise InputError("approve: name at least one variant, e.g. klingflow approve RUN a,c")
    return variants


def register(app: typer.Typer) -> None:
    """Add ``approve`` to ``app``."""

    @app.command()
    def approve(
        run: Annotated[str, typer.Argument(help="The run id waiting for a choice (see klingflow status).")],
        variants: Annotated[str, typer.Argument(help="The variants to finish, comma-separated, e.g. a,c.")],
    ) -> None:
        """Choose the finals of RUN, paused on the Prefect server for a choice (select: manual).

        Exit 66 when no flow run of RUN waits for a choice, 65 for a variant the run does not
        have (the valid ones are listed), 78 without a Prefect server (PREFECT_API_URL).

        Example: klingflow approve weekly-campaign-049373e34d a,c
        """
        chosen = parse_variants(variants)
        prefect_env(verbose=False)
        name = orchestration().approve(run, chosen)
        console().print(
            f"run {run}: finals {', '.join(chosen)} chosen; flow run {name} resumes", markup=False
        )
