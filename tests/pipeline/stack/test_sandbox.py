"""The sandbox as a child process: ``klingflow sandbox serve`` with its options passed through, the
probed child with any config, the readers, and stopping or killing it."""

from __future__ import annotations

import signal
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from pipeline.errors import StackError
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.stack.sandbox import SandboxProcess

MODEL = "kling/kling-3.0/standard/text-to-video"


def test_serve_passes_options_through_and_keeps_the_token_off_the_command_line(tmp_path: Path) -> None:
    sandbox = SandboxProcess.serve(
        tmp_path / "sb",
        latency_scale=0.5,
        realistic=True,
        token="sekret-token",
        tls=(tmp_path / "cert.pem", tmp_path / "key.pem"),
        cdn_base_url="https://cdn.example:8443",
        options=["--fault-fail", "0.5"],
    )
    command = sandbox.command
    assert command[1:3] == ["sandbox", "serve"]
    assert command[command.index("--latency-scale") + 1] == "0.5"
    assert "--realistic" in command
    assert command[command.index("--tls-cert") + 1] == str(tmp_path / "cert.pem")
    assert command[command.index("--cdn-base-url") + 1] == "https://cdn.example:8443"
    assert command[-2:] == ["--fault-fail", "0.5"]
    assert not any("sekret" in part for part in command)
    assert sandbox.env == {"KLINGFLOW_SANDBOX_TOKEN": "sekret-token"}
    assert sandbox.scheme == "https"
    with pytest.raises(StackError, match="not running"):
        _ = sandbox.pid


@pytest.mark.slow
def test_serve_answers_and_its_readers_see_a_paid_request(
    sandbox_process: Callable[..., SandboxProcess],
) -> None:
    sandbox = sandbox_process(latency_scale=0.001)
    assert sandbox.ledger() == []
    submitted = httpx.post(f"{sandbox.base_url}/models/{MODEL}", json={"prompt": "a kite", "duration": 3})
    assert submitted.status_code == 200, submitted.text
    rid = submitted.json()["request_id"]
    assert [r["request_id"] for r in sandbox.requests()] == [rid]
    assert sandbox.stats()["max_in_flight_seen"] == 1
    (entry,) = sandbox.ledger()
    assert entry["request_id"] == rid
    sandbox.stop()
    assert sandbox.proc is not None
    assert sandbox.proc.returncode is not None
    with pytest.raises(httpx.ConnectError):
        sandbox.ledger()


@pytest.mark.slow
def test_realistic_serve_over_tls_wants_the_token(
    tmp_path: Path, sandbox_process: Callable[..., SandboxProcess]
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    sandbox = sandbox_process(realistic=True, token="stack-token", tls=(chain, key), verify=trust)
    assert sandbox.base_url.startswith("https://127.0.0.1:")
    models = f"{sandbox.base_url}/models"
    assert httpx.get(models, verify=trust).status_code == 401
    assert httpx.get(models, verify=trust, headers={"Authorization": "Bearer stack-token"}).status_code == 200


@pytest.mark.slow
def test_the_probed_child_runs_any_config_counts_calls_and_dies_when_killed(tmp_path: Path) -> None:
    config = SandboxConfig(latency_scale=0.1, render_scale=0.05, slots=3, submit_burst=7)
    with SandboxProcess.probed(config, tmp_path / "probed", render_cache=tmp_path / "cache") as sandbox:
        assert (tmp_path / "probed" / "renders").resolve() == (tmp_path / "cache").resolve()
        submitted = httpx.post(f"{sandbox.base_url}/models/{MODEL}", json={"prompt": "a gull", "duration": 3})
        rid = submitted.json()["request_id"]
        httpx.get(f"{sandbox.base_url}/requests/{rid}/status")
        calls = sandbox.calls()
        assert calls["submit"] == 1
        assert calls["status"] == 1
        (job,) = sandbox.jobs()
        assert job["request_id"] == rid
        assert job["accepted"] < job["modelled_done"]  # modelled: seconds of queue and render ahead
        sandbox.kill()
        assert sandbox.proc is not None
        assert sandbox.proc.returncode == -signal.SIGKILL


def test_a_sandbox_that_cannot_start_is_a_stack_error_with_its_output(tmp_path: Path) -> None:
    broken = SandboxProcess.serve(tmp_path / "sb", options=["--no-such-option"])
    with pytest.raises(StackError, match="did not answer") as failure:
        broken.start(timeout=60)
    assert "no-such-option" in failure.value.log_tail
