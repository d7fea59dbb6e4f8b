"""``klingflow validate`` and ``klingflow plan``: pure commands that never start Prefect."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from pipeline.errors import ScriptError
from pipeline.planning.plan import build_plan, plan_to_dict
from pipeline.script.loader import load_script


def register(app: typer.Typer) -> None:
    """Add ``validate`` and ``plan`` to ``app``."""

    @app.command()
    def validate(
        script: Annotated[str, typer.Argument(help="Render script (YAML): a path or s3://bucket/key.yaml.")],
    ) -> None:
        """Check a render script; print `ok` or every problem as FILE:LINE: field.path: message.

        Exit 0 when valid, 65 when invalid, 66 when the file (or S3 object) does not exist; for
        s3:// scripts also 77 (credentials), 69 (missing bucket, unreachable store), 78 (settings).

        Example: klingflow validate configs/weekly-campaign.yaml
        """
        try:
            load_script(script)
        except ScriptError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(f"{script}: {len(exc.problems)} problem(s)", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        print("ok")

    @app.command()
    def plan(
        script: Annotated[str, typer.Argument(help="Render script (YAML): a path or s3://bucket/key.yaml.")],
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object instead of a table.")
        ] = False,
    ) -> None:
        """Show every request a run of SCRIPT would make, its cost, and the total against the budget.

        Nothing is submitted. Exit 3 when even the cheapest plan exceeds budget.limit_usd.

        Example: klingflow plan configs/long-form-story.yaml --json
        """
        try:
            loaded = load_script(script)
        except ScriptError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        render_plan = build_plan(loaded.script)
        if as_json:
            # dumps, not dump: json.dump streams through the pure-Python encoder (10x slower).
            sys.stdout.write(json.dumps(plan_to_dict(render_plan), indent=2) + "\n")
            return
        from pipeline.cli.plan_view import print_plan

        print_plan(Console(), render_plan)
