"""How the command line reaches the Prefect flows without the library importing them.

The layers go one way: ``flows/`` (Prefect) builds on ``pipeline/``, never the reverse, and
``tests/test_architecture.py`` keeps it so. Yet ``klingflow run``, ``status``, ``cancel``,
``deploy``, ``serve``, ``worker`` and ``resume`` need the flows. So the commands stay here, with
their options, help and exit codes, and reach the flows through an :class:`Orchestration`: a
plug-in that ``flows/`` declares as the ``prefect`` entry point of the ``klingflow.orchestration``
group in ``pyproject.toml`` (``flows.commands:ORCHESTRATION``), found through the installed
package's metadata — only when such a command runs, so that ``validate`` and ``plan`` never
import Prefect.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import StackError

if TYPE_CHECKING:
    from pipeline.render.entry import Launch
    from pipeline.render.progress import RunOutcome

#: The entry-point group and name ``flows/`` registers under.
GROUP = "klingflow.orchestration"
NAME = "prefect"


@dataclass(frozen=True)
class FlowRunRow:
    """One render flow run on the Prefect server, as ``klingflow status`` shows it."""

    name: str
    run_id: str | None
    state: str
    deployment: str | None
    started: datetime | None
    worker: str | None


@dataclass(frozen=True)
class DeploymentRow:
    """One deployment ``klingflow deploy`` registered."""

    name: str
    schedule: str
    script: str
    id: str


class Orchestration(Protocol):
    """What the command line asks of the flows (implemented in ``flows/commands.py``)."""

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
        """The render flow run of a prepared run, in this process (awaitable)."""
        ...

    def server_configured(self) -> bool:
        """Whether a Prefect server is configured (``PREFECT_API_URL`` or the profile)."""
        ...

    def flow_runs(self) -> list[FlowRunRow]:
        """The render flow runs on the server (StackError when it cannot be reached)."""
        ...

    def cancel_flow_runs(self, run: str, wait: float) -> list[tuple[str, str]]:
        """Cancel ``run``'s flow runs on the server; (flow run name, state) of each."""
        ...

    def deploy(self, scripts: list[str], *, pool: str, provider: str | None) -> list[DeploymentRow]:
        """Register a deployment per script on ``pool``."""
        ...

    def serve(self, scripts: list[str], *, runs_dir: Path, provider: str | None, limit: int | None) -> None:
        """Serve the scripts' deployments from this process until stopped (their flow runs
        keep their state under ``runs_dir``, made absolute)."""
        ...

    def work(self, pool: str, *, runs_dir: Path, limit: int | None, name: str | None) -> None:
        """Run a process worker on ``pool`` until stopped (runs under ``runs_dir``)."""
        ...

    def resume(self, run: str) -> tuple[str, str]:
        """Schedule ``run`` again on any worker; (flow run name, flow run id)."""
        ...


def orchestration() -> Orchestration:
    """The installed flows' :class:`Orchestration`; StackError (exit 69) when none is installed."""
    found = entry_points(group=GROUP, name=NAME)
    for entry in found:
        loaded: Orchestration = entry.load()
        return loaded
    raise StackError(
        f"klingflow's flows are not installed (no {GROUP!r} entry point): reinstall the package, "
        "e.g. pip install -e ."
    )
