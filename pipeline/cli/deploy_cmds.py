"""``klingflow deploy``, ``serve``, ``worker`` and ``resume``: scheduled renders and scale-out.

All four talk to a Prefect server (``PREFECT_API_URL``); see the README's "Running at scale".
Their Prefect side is the flows' :class:`~pipeline.cli.orchestration.Orchestration`, found only
when a command runs, so that ``validate`` and ``plan`` stay fast and the library never imports
``flows/``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.orchestration import orchestration
from pipeline.cli.provider_cmds import ProviderChoice
from pipeline.cli.run_cmds import prefect_env
from pipeline.settings import load_settings

_out = Console(highlight=False)

_PROVIDER = typer.Option(
    help="runcomfy, fal, kling or sandbox for every run of the deployment (default: the script's)."
)


def register(app: typer.Typer) -> None:
    """Add ``deploy``, ``serve``, ``worker`` and ``resume`` to ``app``."""

    @app.command()
    def deploy(
        scripts: Annotated[list[str], typer.Argument(help="Render scripts: paths or s3://bucket/key.yaml.")],
        pool: Annotated[str, typer.Option(help="Work pool whose workers run the renders.")] = "klingflow",
        provider: Annotated[ProviderChoice | None, _PROVIDER] = None,
    ) -> None:
        """Register a deployment of the render flow per SCRIPT, on its schedule (cron + time zone).

        Scripts are validated first. A script without a schedule is deployed to be started on
        demand (prefect deployment run 'klingflow-render/NAME'). Workers: klingflow worker.

        Example: klingflow deploy configs/weekly-campaign.yaml
        """
        prefect_env(verbose=False)
        made = orchestration().deploy(scripts, pool=pool, provider=provider.value if provider else None)
        table = Table("deployment", "schedule", "script", "id")
        for d in made:
            table.add_row(d.name, d.schedule, d.script, d.id)
        _out.print(table)
        _out.print(f"work pool: {pool} (start workers with: klingflow worker --pool {pool})")

    @app.command()
    def serve(
        scripts: Annotated[list[str], typer.Argument(help="Render scripts: paths or s3://bucket/key.yaml.")],
        provider: Annotated[ProviderChoice | None, _PROVIDER] = None,
        limit: Annotated[int | None, typer.Option(min=1, help="Renders at once (default: no limit).")] = None,
    ) -> None:
        """Serve the SCRIPTS' deployments from this one process, on their schedules, until stopped.

        For a single machine: no work pool or worker needed. Schedules stay active when it stops.

        Example: klingflow serve configs/weekly-campaign.yaml configs/bulk-ab.yaml
        """
        prefect_env(verbose=True)
        runs_dir = load_settings().run.runs_dir
        orchestration().serve(
            scripts, runs_dir=runs_dir, provider=provider.value if provider else None, limit=limit
        )

    @app.command()
    def worker(
        pool: Annotated[
            str, typer.Option(help="Work pool to take flow runs from (created if missing).")
        ] = "klingflow",
        limit: Annotated[int | None, typer.Option(min=1, help="Flow runs at once on this worker.")] = None,
        name: Annotated[str | None, typer.Option(help="Worker name shown in the Prefect UI.")] = None,
    ) -> None:
        """Run a Prefect process worker: it takes render flow runs from POOL until stopped.

        Share KLINGFLOW_STORE_URL (job store and spend ledger) and KLINGFLOW_SHARED_URL (clips)
        between workers; provider limits are shared through the Prefect server.

        Example: klingflow worker --pool klingflow
        """
        prefect_env(verbose=True)
        runs_dir = load_settings().run.runs_dir
        orchestration().work(pool, runs_dir=runs_dir, limit=limit, name=name)

    @app.command()
    def resume(
        run: Annotated[str, typer.Argument(help="The run id (see klingflow status).")],
    ) -> None:
        """Start RUN again on any worker, from where it stopped (nothing is bought twice).

        For a run whose worker died: klingflow cancel RUN --keep-requests, then klingflow resume RUN.

        Example: klingflow resume weekly-campaign-049373e34d
        """
        prefect_env(verbose=False)
        name, flow_run_id = orchestration().resume(run)
        _out.print(f"run {run}: flow run {name} ({flow_run_id}) scheduled for the next free worker")
