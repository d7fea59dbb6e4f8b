"""``klingflow sandbox serve``: its option checks, and a realistic server over TLS in a subprocess."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme

from pipeline.cli import main
from pipeline.errors import EXIT_CONFIG

CDN = "https://cdn-sandbox.runcomfy.net:8443"


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLINGFLOW_SANDBOX_TOKEN", raising=False)


@pytest.mark.parametrize(
    "args",
    [
        ["--realistic"],  # no token
        ["--tls-cert", "cert.pem"],  # a certificate without its key
        ["--tls-cert", "missing.pem", "--tls-key", "missing.pem"],
        ["--cdn-base-url", "ftp://cdn.example"],
    ],
)
def test_bad_option_combinations_exit_78(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cert.pem").write_text("x")
    paths = [str(tmp_path / a) if a.endswith(".pem") else a for a in args]
    assert main(["sandbox", "serve", "--data-dir", str(tmp_path / "data"), *paths]) == EXIT_CONFIG
    assert "error:" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_realistic_serve_answers_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "cdn-sandbox.runcomfy.net")
    chain, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "sandbox",
        "serve",
        "--realistic",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--render-scale",
        "0.1",
        "--latency-scale",
        "0.005",
        "--tls-cert",
        str(chain),
        "--tls-key",
        str(key),
        "--cdn-base-url",
        CDN,
    ]
    env = {**os.environ, "KLINGFLOW_SANDBOX_TOKEN": "cli-token"}  # never on the command line
    server = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}/v1"
    headers = {"Authorization": "Bearer cli-token"}
    try:
        with httpx.Client(base_url=base, verify=trust, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 60  # start-up guard, not a timing assertion
            while True:
                try:
                    info = client.get("/models/kling/kling-3.0/standard/text-to-video")
                    break
                except httpx.ConnectError:
                    assert server.poll() is None, server.communicate()[0].decode()
                    assert time.monotonic() < deadline, "the sandbox did not start"
                    time.sleep(0.1)
            assert info.status_code == 200 and info.json()["price_unit"] == "second"
            assert client.get("/models", headers={"Authorization": "Bearer wrong"}).status_code == 403
            submitted = client.post(
                "/models/kling/kling-3.0/standard/text-to-video", json={"prompt": "a kite", "duration": 3}
            )
            assert submitted.status_code == 200, submitted.text
            rid = submitted.json()["request_id"]
            while (result := client.get(f"/requests/{rid}/result").json())["status"] != "completed":
                assert time.monotonic() < deadline + 60, result
                time.sleep(0.1)
            assert result["output"]["video"] == f"{CDN}/videos/{rid}.mp4"
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert "cli-token" not in output
    assert f"https://127.0.0.1:{port}/v1" in output
