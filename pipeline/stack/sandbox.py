"""The sandbox provider as a child process on loopback, for tests and benchmarks.

Two ways to start one, both answering the same API and operator endpoints:

- :meth:`SandboxProcess.serve`: ``klingflow sandbox serve`` exactly as an operator runs it; its
  options pass through (``--realistic``, ``--tls-cert``/``--tls-key``, ``--cdn-base-url``, fault
  rates, …), the token through ``KLINGFLOW_SANDBOX_TOKEN`` (never on a command line).
- :meth:`SandboxProcess.probed`: this module as the child (``python -m pipeline.stack.sandbox``)
  with any :class:`SandboxConfig` — GPU slots, render workers, submit burst: knobs ``serve`` has no
  option for — plus two read-only probes for benchmarks: ``GET /stack/jobs`` (each job's
  accepted / modelled / finished times) and ``GET /stack/calls`` (API calls by kind). A render
  cache shared between sandboxes serves clips rendered once (:func:`warm_render_cache`), so the
  sandbox's ffmpeg neither competes with what is measured nor favours a later round.

Example::

    with SandboxProcess.serve(tmp / "sandbox", latency_scale=0.02) as sandbox:
        env = {"KLINGFLOW_SANDBOX_URL": sandbox.base_url}
        ...
        assert all(e["charge_count"] <= 1 for e in sandbox.ledger())
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pipeline.errors import StackError
from pipeline.generation import GenerationSpec
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.stack.children import console_script, stop_group, tail
from pipeline.stack.ports import HOST, free_port

STARTUP_TIMEOUT_S = 60.0
#: A port picked free may be taken before the child binds it: try this many ports.
PORT_ATTEMPTS = 3
#: What the probed child counts in ``GET /stack/calls``.
CALL_KINDS = (
    ("submit", re.compile(r"^POST /v1/models/")),
    ("status", re.compile(r"^GET /v1/requests/[^/]+/status$")),
    ("result", re.compile(r"^GET /v1/requests/[^/]+/result$")),
    ("download", re.compile(r"^GET /cdn/")),
)


@dataclass
class SandboxProcess:
    """A sandbox child process: start, wait until it answers, read its ledger, stop or kill it."""

    command: list[str]  # without the port, which start() adds
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    #: How readers check the server's certificate (an SSLContext trusting a test CA over TLS).
    verify: ssl.SSLContext | bool = True
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def serve(
        cls,
        data_dir: Path,
        *,
        latency_scale: float = 0.02,
        render_scale: float = 0.1,
        realistic: bool = False,
        token: str | None = None,
        tls: tuple[Path, Path] | None = None,
        cdn_base_url: str | None = None,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> SandboxProcess:
        """``klingflow sandbox serve`` (not started yet); ``options`` are passed as they are."""
        command = [
            console_script("klingflow"), "sandbox", "serve", "--host", HOST,
            "--latency-scale", f"{latency_scale:g}", "--render-scale", f"{render_scale:g}",
            "--data-dir", str(data_dir),
        ]  # fmt: skip
        if realistic:
            command.append("--realistic")
        if tls is not None:
            command += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        if cdn_base_url is not None:
            command += ["--cdn-base-url", cdn_base_url]
        child_env = dict(env or {})
        if token is not None:
            child_env["KLINGFLOW_SANDBOX_TOKEN"] = token
        return cls(
            [*command, *options],
            data_dir,
            child_env,
            scheme="https" if tls is not None else "http",
            verify=verify,
        )

    @classmethod
    def probed(
        cls, config: SandboxConfig, data_dir: Path, *, render_cache: Path | None = None
    ) -> SandboxProcess:
        """This module's child: ``config`` as it is, plus ``/stack/jobs`` and ``/stack/calls``.

        ``render_cache``: a directory of rendered clips shared with other sandboxes (linked as the
        data directory's ``renders``).
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        if render_cache is not None:
            render_cache.mkdir(parents=True, exist_ok=True)
            (data_dir / "renders").symlink_to(render_cache.absolute(), target_is_directory=True)
        command = [sys.executable, "-m", __name__, config.model_dump_json(), str(data_dir)]
        return cls(command, data_dir)

    # --- where it is ------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """``http(s)://127.0.0.1:PORT``: where the API (``/v1``) and the clips (``/cdn``) live."""
        return f"{self.scheme}://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base (``KLINGFLOW_SANDBOX_URL``)."""
        return f"{self.origin}/v1"

    @property
    def pid(self) -> int:
        """The child's pid (it leads its own process group)."""
        if self.proc is None:
            raise StackError("the sandbox is not running: start() it first")
        return self.proc.pid

    @property
    def log(self) -> Path:
        """The child's output."""
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    # --- life -----------------------------------------------------------------------------------

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> SandboxProcess:
        """Start on a free loopback port and wait until the ledger endpoint answers."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [*self.command, "--port", str(self.port)],
                    env={**os.environ, **self.env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a terminal's Ctrl-C is the starter's to handle
                )
            if self._wait_until_up(timeout):
                return self
            said = tail(self.log)
            self.stop()
            if attempt + 1 < PORT_ATTEMPTS and "address already in use" in said.lower():
                continue  # someone took the free port first: pick another
            raise StackError(f"the sandbox did not answer on {self.origin}", log_tail=said)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_until_up(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                httpx.get(f"{self.base_url}/sandbox/ledger", verify=self.verify, timeout=2)
                return True  # any answer: it serves
            except httpx.HTTPError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop it as Ctrl-C would (SIGINT to its group; SIGKILL if it lingers); safe twice."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGINT, timeout=30)

    def kill(self) -> None:
        """Kill it at once, as a crash would."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGKILL)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- readers --------------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        """``GET path`` (from the origin) as JSON."""
        answer = httpx.get(f"{self.origin}{path}", verify=self.verify, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def ledger(self) -> list[dict[str, Any]]:
        """``GET /v1/sandbox/ledger``'s entries: every accepted request, cost, charges."""
        entries: list[dict[str, Any]] = self.get("/v1/sandbox/ledger")["entries"]
        return entries

    def requests(self) -> list[dict[str, Any]]:
        """``GET /v1/sandbox/requests``: one entry per submit."""
        found: list[dict[str, Any]] = self.get("/v1/sandbox/requests")["requests"]
        return found

    def stats(self) -> dict[str, Any]:
        """``GET /v1/sandbox/stats``: peak in flight, accept times, 429s, downloads."""
        found: dict[str, Any] = self.get("/v1/sandbox/stats")
        return found

    def jobs(self) -> list[dict[str, Any]]:
        """Probed child only: each job's status and times (wall clock seconds)."""
        found: list[dict[str, Any]] = self.get("/stack/jobs")
        return found

    def calls(self) -> dict[str, int]:
        """Probed child only: API calls by kind (submit, status, result, download, other)."""
        found: dict[str, int] = self.get("/stack/calls")
        return found


def warm_render_cache(
    specs: Sequence[GenerationSpec], cache: Path, work: Path, *, render_scale: float
) -> None:
    """Have a sandbox render every clip of ``specs`` once into ``cache`` (no latency, no limits).

    Timed sandboxes sharing ``cache`` then serve those clips at their modelled times without
    running ffmpeg. Raises StackError naming the requests that failed.
    """
    from pipeline.providers.runcomfy import RunComfyProvider
    from pipeline.providers.settings import ProviderSettings

    config = SandboxConfig(
        latency_scale=0.0,
        render_scale=render_scale,
        render_workers=2,
        slots=64,
        max_in_flight=10_000,
        submit_rate_per_s=10_000,
        submit_burst=10_000,
    )

    async def render_all(sandbox: SandboxProcess) -> None:
        settings = ProviderSettings(base_url=sandbox.base_url, token_file=Path("/nonexistent"))
        async with RunComfyProvider(settings, download_origins=(sandbox.origin,)) as provider:
            pending = [(await provider.submit(spec)).request_id for spec in specs]
            while pending:
                await asyncio.sleep(0.5)
                states = await asyncio.gather(*(provider.status(rid) for rid in pending))
                pending = [s.request_id for s in states if not s.state.is_terminal]

    with SandboxProcess.probed(config, work, render_cache=cache) as sandbox:
        asyncio.run(render_all(sandbox))
        failed = [e["request_id"] for e in sandbox.ledger() if not e["charged"]]
    if failed:
        raise StackError(f"warm-up renders failed: {failed}", log_tail=tail(sandbox.log))


# --- the probed child ---------------------------------------------------------------------------


def _serve_probed(config_json: str, data_dir: str, port: int) -> None:  # pragma: no cover - a child
    """Serve the sandbox app with ``/stack/jobs`` and ``/stack/calls`` until SIGINT."""
    import contextlib

    import uvicorn
    from starlette.responses import JSONResponse

    from pipeline.providers.sandbox.app import create_app
    from pipeline.providers.sandbox.server import uvicorn_config

    app = create_app(SandboxConfig.model_validate_json(config_json), Path(data_dir))
    state = app.state
    calls: dict[str, int] = {}

    def jobs() -> list[dict[str, Any]]:
        offset = time.time() - time.monotonic()  # the model's monotonic times → wall clock
        return [
            {
                "request_id": j.request_id,
                "prompt": j.inp.prompt,
                "duration": j.inp.duration,
                "status": j.status,
                "accepted": j.created_at,
                "start": j.start_at + offset,
                "modelled_done": j.done_at + offset,
                "finished": j.finished_at,
            }
            for j in state.jobs.values()
        ]

    async def probed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/stack/jobs":
                await JSONResponse(jobs())(scope, receive, send)
                return
            if scope["path"] == "/stack/calls":
                await JSONResponse(calls)(scope, receive, send)
                return
            line = f"{scope['method']} {scope['path']}"
            kind = next((k for k, pattern in CALL_KINDS if pattern.search(line)), "other")
            calls[kind] = calls.get(kind, 0) + 1
        await app(scope, receive, send)

    server = uvicorn.Server(uvicorn_config(probed, HOST, port))  # type: ignore[arg-type]
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT that stopped it
        server.run()


if __name__ == "__main__":  # pragma: no cover - run by SandboxProcess.probed
    _config, _data_dir, _flag, _port = sys.argv[1:5]
    assert _flag == "--port", sys.argv
    _serve_probed(_config, _data_dir, int(_port))
