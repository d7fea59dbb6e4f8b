"""``klingflow validate`` and ``klingflow plan``: pure commands that never start Prefect."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from pipeline.capabilities import CAPABILITIES
from pipeline.cli.output import console
from pipeline.cli.plan_json import planned_provider, print_plan_json
from pipeline.cli.provider_cmds import ProviderChoice
from pipeline.errors import ScriptError
from pipeline.money import billing_note
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
        provider: Annotated[
            ProviderChoice | None,
            typer.Option(
                help="Compile and price for runcomfy, fal, kling or sandbox (default: the script's)."
            ),
        ] = None,
        compare: Annotated[
            bool, typer.Option("--compare", help="One row per provider: total and what each would drop.")
        ] = False,
    ) -> None:
        """Show every request a run of SCRIPT would make, its cost, and the total against the budget.

        Nothing is submitted. Exit 3 when even the cheapest plan exceeds budget.limit_usd
        (with --json the plan is still printed, with "fits": false). Each request is compiled
        for the provider (native storyboard, elements, voice where it takes them); --json shows
        per request the exact body its adapter would submit. --compare prices the script on
        runcomfy, fal and kling side by side.

        Example: klingflow plan configs/long-form-story.yaml --compare
        """
        try:
            loaded = load_script(script)
        except ScriptError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        if compare:
            from pipeline.cli.plan_compare import compare as compare_providers
            from pipeline.cli.plan_compare import compare_to_dict, print_compare

            rows = compare_providers(loaded.script)
            if as_json:
                sys.stdout.write(json.dumps(compare_to_dict(rows), indent=2) + "\n")
            else:
                print_compare(console(), loaded.script, rows)
            return
        chosen = provider.value if provider else loaded.script.provider
        billed_by = planned_provider(chosen)
        # reuse/buy per request from the clip library (pipeline/render/library_plan.py).
        from pipeline.planning.plan import build_plan
        from pipeline.render.library_plan import paid_for

        with paid_for(loaded, provider=chosen) as paid:
            if as_json:
                print_plan_json(loaded.script, billed_by, paid, base_dir=loaded.base_dir)
                return
            render_plan = build_plan(
                loaded.script, paid, provider=billed_by if billed_by in CAPABILITIES else None
            )
        from pipeline.cli.plan_view import print_plan

        out = console()
        print_plan(out, render_plan)
        drops = "; ".join(render_plan.drops) or "nothing"
        out.print(f"compiled for {render_plan.provider}: drops {drops}", markup=False)
        out.print(billing_note(billed_by, render_plan.total_cents), markup=False)
