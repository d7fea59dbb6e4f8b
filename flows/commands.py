"""The flows as the command line sees them: the :class:`~pipeline.cli.orchestration.Orchestration`
that ``pyproject.toml`` registers as the ``prefect`` entry point of ``klingflow.orchestration``.

The commands themselves (options, help, output, exit codes) live in ``pipeline/cli/``; this
module only runs their Prefect side, so that the library never imports ``flows/``.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from flows import choice
from flows.deploy import deploy, needs_server, on_server, serve, work
from flows.limits import server_configured
from flows.operations import cancel, resume, views
from flows.render import render
from pipeline.cli.orchestration import DeploymentRow, FlowRunRow
from pipeline.render.entry import Launch
from pipeline.render.progress import RunOutcome


class PrefectOrchestration:
    """The render flow, deployments, workers and flow-run operations on Prefect."""

    def render(
        self,
        launch: Launch,
        *,
        script: str,
        provider: str | None,
        max_in_flight: int | None,
        approve: Sequence[str] | None,
        resubmit_unknown: bool,
        rehearse: bool,
    ) -> Coroutine[Any, Any, RunOutcome]:
        """The render flow run of ``launch``'s prepared run (its parameters as a deployment's)."""
        return render(
            script=script,
            run_id=launch.prepared.run_id,
            provider=provider,
            max_in_flight=max_in_flight,
            approve=list(approve) if approve is not None else None,
            resubmit_unknown=resubmit_unknown,
            rehearse=rehearse,
            launch=launch,
        )

    def server_configured(self) -> bool:
        """Whether a Prefect server is configured."""
        return server_configured()

    def flow_runs(self) -> list[FlowRunRow]:
        """The render flow runs on the server."""
        return [
            FlowRunRow(v.name, v.run_id, v.state, v.deployment, v.started, v.worker)
            for v in on_server(views())
        ]

    def cancel_flow_runs(self, run: str, wait: float) -> list[tuple[str, str]]:
        """Cancel ``run``'s flow runs on the server."""
        return on_server(cancel(run, wait_s=wait))

    def deploy(self, scripts: list[str], *, pool: str, provider: str | None) -> list[DeploymentRow]:
        """Register a deployment per script on ``pool``."""
        made = on_server(deploy(scripts, pool=pool, provider=provider))
        return [
            DeploymentRow(
                f"klingflow-render/{d.loaded.script.name}",
                d.schedule,
                str(d.deployment.parameters["script"]),
                deployment_id,
            )
            for d, deployment_id in made
        ]

    def serve(self, scripts: list[str], *, runs_dir: Path, provider: str | None, limit: int | None) -> None:
        """Serve the scripts' deployments from this process until stopped."""
        on_server(serve(scripts, runs_dir=runs_dir, provider=provider, limit=limit))

    def work(self, pool: str, *, runs_dir: Path, limit: int | None, name: str | None) -> None:
        """Run a process worker on ``pool`` until stopped."""
        on_server(work(pool, runs_dir=runs_dir, limit=limit, name=name))

    def resume(self, run: str) -> tuple[str, str]:
        """Schedule ``run`` again on any worker."""
        needs_server("klingflow resume")
        flow_run = on_server(resume(run))
        return flow_run.name, str(flow_run.id)

    def approve(self, run: str, variants: Sequence[str]) -> str:
        """Resume ``run``'s flow run paused for a choice of finals."""
        needs_server("klingflow approve")
        return on_server(choice.approve(run, variants))


#: The entry point's object (``flows.commands:ORCHESTRATION``).
ORCHESTRATION = PrefectOrchestration()
