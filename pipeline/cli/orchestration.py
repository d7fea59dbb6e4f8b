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

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
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

    def approve(self, run: str, variants: Sequence[str]) -> str:
        """Resume ``run``'s flow run paused for a choice of finals with ``variants``; its name."""
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


#: Set to the early server's API URL while it serves, beside ``PREFECT_API_URL``: the flows ask
#: it to tell this temporary server from a configured one (``flows.limits.server_configured``).
EARLY_SERVER_ENV = "KLINGFLOW_EPHEMERAL_API_URL"
#: What a failed server's message says when it logged nothing (its logs are quiet unless asked).
_NOTHING_SAID = "(nothing at its log level: run again with --verbose to see its logs)"
#: Prefect's own health endpoint, polled this often while the server boots.
_POLL_S = 0.05


class EarlyServer:
    """Prefect's temporary (ephemeral) API server, started by ``klingflow run`` before Prefect
    is imported, so that its ~3 s of boot (mostly importing Prefect's server) run on the other
    core while this process imports the flows, instead of after them.

    It is the command Prefect's own ``SubprocessASGIServer`` runs (uvicorn on Prefect's app
    factory, UI off, ephemeral services), on a free loopback port given to this process as
    ``PREFECT_API_URL``: Prefect reads its settings once, when imported, so the port is settled
    before that. :data:`EARLY_SERVER_ENV` marks the URL as this temporary server's, so that the
    flows still treat the run as Prefect's ephemeral mode (local limits, no UI choice).
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, saved: dict[str, str | None], log: Path | None = None
    ) -> None:
        self.proc = proc
        self.port = port
        self._saved = saved
        #: The server's own output: kept off the terminal (its shutdown races log tracebacks,
        #: as Prefect's does), shown when it fails to start, removed when it stops.
        self.log = log

    def output_tail(self, limit: int = 3000) -> str:
        """The end of the server's own output (empty when there is none)."""
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""

    @property
    def api_url(self) -> str:
        """The server's API base, as Prefect's client wants it."""
        return f"http://127.0.0.1:{self.port}/api"

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the server answers ``/health``; StackError (exit 69) if it exits first or
        does not answer within ``timeout`` (default: ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``,
        else 120 s)."""
        import httpx  # only once the script is planned: validate never needs it

        if timeout is None:
            timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 120)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    said = self.output_tail()
                    self.stop()
                    raise StackError(
                        f"Prefect's temporary API server exited with code {self.proc.returncode} "
                        f"as it started; it said:\n{said or _NOTHING_SAID}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                time.sleep(_POLL_S)
        said = self.output_tail()
        self.stop()
        raise StackError(
            f"Prefect's temporary API server did not answer within {timeout:.0f} s; it said:\n"
            f"{said or _NOTHING_SAID}"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 5 s, as Prefect does) and give the environment
        back its previous ``PREFECT_API_URL``; safe twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.restore_environment()
        if self.log is not None:
            self.log.unlink(missing_ok=True)

    def restore_environment(self) -> None:
        """Give the environment back its previous ``PREFECT_API_URL`` (Prefect, once imported,
        keeps the URL it read); safe twice."""
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}


_early: list[EarlyServer] = []


def start_early_server() -> EarlyServer | None:
    """Start Prefect's temporary API server now, when the run will need one; None when it will
    not (a server is configured) or cannot be started this way (Prefect already imported, e.g.
    under tests: its settings are read). It stops at exit; :func:`release_early_server` gives the
    environment back."""
    if "prefect" in sys.modules or server_may_be_configured():
        return None
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        return None  # no Prefect: orchestration() says so
    port = _free_port()
    saved = {name: os.environ.get(name) for name in ("PREFECT_API_URL", EARLY_SERVER_ENV)}
    server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent),
        "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    with tempfile.NamedTemporaryFile(prefix="klingflow-prefect-server-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            command, env={**os.environ, **server_env}, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    server = EarlyServer(proc, port, saved, Path(log.name))
    os.environ["PREFECT_API_URL"] = os.environ[EARLY_SERVER_ENV] = server.api_url
    # Stopped at exit, as Prefect stops its own: registered before Prefect is imported, so it
    # runs after Prefect's exit handlers, which still send the last logs and events to it.
    atexit.register(server.stop)
    _early.append(server)
    return server


def release_early_server() -> None:
    """Once the command is over: give the environment back its ``PREFECT_API_URL`` (an
    in-process caller's later children must not inherit it), and stop the server now if
    Prefect never started (bad input); else it stops at exit, after Prefect's last logs."""
    while _early:
        server = _early.pop()
        if "prefect" in sys.modules:
            server.restore_environment()
        else:
            server.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_may_be_configured() -> bool:
    """Whether Prefect may find a server URL anywhere it reads settings from: the environment,
    the profiles file, ``prefect.toml``, ``.env`` or ``pyproject.toml`` here. Any doubt leaves
    the start to Prefect, as before."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    for path, marker in (
        (profiles, "PREFECT_API_URL"),
        (Path(".env"), "PREFECT_API_URL"),
        (Path("prefect.toml"), ""),
        (Path("pyproject.toml"), "tool.prefect"),
    ):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if marker in path.read_text(encoding="utf-8"):
                return True
    return False
