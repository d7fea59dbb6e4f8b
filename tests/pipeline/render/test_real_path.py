"""The real RunComfy path end to end (issue 11): ``--provider runcomfy`` with a token, against
``klingflow sandbox serve --realistic`` over TLS, exactly as a user's run would go.

The sandbox runs as its own process with a certificate from a throwaway CA, under host names of
the provider's own kind (``model-api.sandbox.runcomfy.net``, ``cdn-sandbox.runcomfy.net``).
The test — not the production code — maps those names to loopback, through the HTTP clients'
network backend (:class:`pipeline.providers.transport.CheckedBackend`'s ``hosts``); trust of
the CA comes from ``SSL_CERT_FILE`` as a company CA would, and downloads from a name that
resolves to loopback are allowed only because the test opts in
(``KLINGFLOW_PROVIDER_ALLOW_PRIVATE_NETWORK=1``). Everything else is a real run's code: the
adapter, the preflight (model info, schema, price), the image transport, the CDN allow-list.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from pipeline.errors import BadRequest
from pipeline.media.probe import probe
from pipeline.planning.plan import build_plan
from pipeline.providers import transport
from pipeline.providers.rehearsal import free_port
from pipeline.render.layout import RunLayout
from pipeline.render.library_plan import plan_with_library
from pipeline.render.session import open_run
from pipeline.render.settings import RunSettings
from pipeline.script.loader import load_script
from pipeline.store.jobs import JobStore

pytestmark = pytest.mark.slow

API_HOST = "model-api.sandbox.runcomfy.net"
CDN_HOST = "cdn-sandbox.runcomfy.net"
TOKEN = "sandbox-token-4f1c"  # the sandbox's, not a real one

SCRIPT = """\
version: 1
name: real-path
defaults: {{audio: false, style: "test card"}}
elements:
  mara:
    description: "woman in her 30s, short red hair, yellow raincoat"
    images: [mara.png]
narratives:
  - id: crossing
    continuity: chain
    shots:
      - {{duration: 10, action: "@mara leaves the harbour"}}
      - {{duration: 12, action: "@mara crosses a storm"}}
      - {{duration: 8, action: "the storm breaks"}}
      - {{duration: 10, action: "a coastline appears"}}
  - id: poster
    continuity: independent
    start_image: deck.png
    shots:
      - {{duration: 5, action: "the deck comes alive"}}
budget:
  limit_usd: 20.00
  draft_tier: standard
  final_tier: pro
  finals: 0
output:
  archive: {archive}
"""


def _image(path: Path, source: str) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"{source}=s=320x180",
            "-frames:v",
            "1",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return ca, bundle


@contextlib.contextmanager
def realistic_sandbox(ca: trustme.CA, bundle: Path, workdir: Path) -> Iterator[str]:
    """``klingflow sandbox serve --realistic`` over TLS; yields its loopback origin."""
    cert = ca.issue_cert(API_HOST, CDN_HOST, "127.0.0.1")
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    command = [
        sys.executable, "-m", "pipeline.cli", "sandbox", "serve", "--realistic",
        "--host", "127.0.0.1", "--port", str(port),
        "--tls-cert", str(cert_file), "--tls-key", str(key_file),
        "--cdn-base-url", f"https://{CDN_HOST}:{port}",
        "--latency-scale", "0.01", "--render-scale", "0.1",
        "--data-dir", str(workdir / "sandbox"),
    ]  # fmt: skip
    env = {**os.environ, "KLINGFLOW_SANDBOX_TOKEN": TOKEN}
    log = (workdir / "sandbox.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    origin = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{origin}/v1/sandbox/ledger", verify=_trust(bundle), timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((workdir / "sandbox.log").read_text()) from None
                time.sleep(0.2)
        yield origin
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def _clients() -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """The clients a real run makes, plus the test's name → loopback mapping."""
    hosts = {API_HOST: "127.0.0.1", CDN_HOST: "127.0.0.1"}
    timeout = httpx.Timeout(30.0, connect=10.0)
    return (
        transport.api_client(timeout, hosts=hosts),
        transport.download_client(timeout, allow_private=True, hosts=hosts),
    )


def _environment(monkeypatch: pytest.MonkeyPatch, bundle: Path, origin: str, tmp_path: Path) -> None:
    port = origin.rsplit(":", 1)[1]
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("RUNCOMFY_TOKEN", TOKEN)
    monkeypatch.setenv("RUNCOMFY_MODEL_API_BASE", f"https://{API_HOST}:{port}/v1/")
    monkeypatch.setenv("KLINGFLOW_PROVIDER_ALLOW_PRIVATE_NETWORK", "1")
    # The sandbox renders at 1/100 of the hosted service's times: so should the poller expect.
    monkeypatch.setenv("KLINGFLOW_POLL_LATENCY_SCALE", "0.01")
    monkeypatch.setenv("RUNCOMFY_CONFIG_DIR", str(tmp_path / "no-config"))


def _script(tmp_path: Path, archive: str) -> Path:
    _image(tmp_path / "deck.png", "testsrc")
    _image(tmp_path / "mara.png", "smptebars")
    script = tmp_path / "real-path.yaml"
    script.write_text(SCRIPT.format(archive=archive))
    return script


async def _render(script: Path, settings: RunSettings) -> Any:
    loaded = load_script(script)
    plan = build_plan(loaded.script)
    api, cdn = _clients()
    async with (
        api,
        cdn,
        open_run(
            loaded, plan, run_id="real", settings=settings, provider="runcomfy", http_clients=(api, cdn)
        ) as session,
    ):
        return await session.run.execute()


def _trust(bundle: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(bundle))


def _get(origin: str, bundle: Path, path: str) -> Any:
    return httpx.get(f"{origin}{path}", verify=_trust(bundle), timeout=10).json()


def _check_money_and_masters(result: Any, origin: str, bundle: Path, runs: Path) -> None:
    assert result.delivered, [m.error for m in result.undelivered]
    lengths = {m.narrative: m.duration_s for m in result.drafts}
    assert lengths == pytest.approx({"crossing": 40.0, "poster": 5.0}, abs=0.05)
    for master in result.drafts:
        assert abs(probe(master.path).duration - lengths[master.narrative]) < 0.05
    ledger = _get(origin, bundle, "/v1/sandbox/ledger")
    charged = [e for e in ledger["entries"] if e["charged"]]
    store = JobStore.open(RunLayout(runs / "real").db_url)
    try:
        spend = store.spend("real")
        jobs = store.jobs_of("real")
    finally:
        store.close()
    # Every request the provider charged is a job of ours, charged once, at the same price.
    assert sorted(e["request_id"] for e in charged) == sorted(str(j.request_id) for j in jobs)
    assert all(e["charge_count"] == 1 for e in charged)
    assert Decimal(ledger["total_charged_usd"]) == spend.charged


def test_data_uris_over_tls_to_a_realistic_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: tuple[trustme.CA, Path]
) -> None:
    authority, bundle = ca
    with realistic_sandbox(authority, bundle, tmp_path) as origin:
        _environment(monkeypatch, bundle, origin, tmp_path)
        script = _script(tmp_path, str(tmp_path / "archive"))
        settings = RunSettings(runs_dir=tmp_path / "runs", image_transport="data-uri")
        result = asyncio.run(_render(script, settings))
        _check_money_and_masters(result, origin, bundle, tmp_path / "runs")
        requests = _get(origin, bundle, "/v1/sandbox/requests")["requests"]
    images = [image for r in requests if not r.get("refused") for image in r["images"].values()]
    # The poster's start image and the chain's three continuation frames, all inline.
    assert len(images) == 4
    assert {image["kind"] for image in images} == {"data-uri"}
    deck = hashlib.sha256((tmp_path / "deck.png").read_bytes()).hexdigest()
    assert deck in {image["sha256"] for image in images}


def test_a_field_the_schema_refuses_stops_the_run_before_any_money(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: tuple[trustme.CA, Path]
) -> None:
    authority, bundle = ca
    with realistic_sandbox(authority, bundle, tmp_path) as origin:
        _environment(monkeypatch, bundle, origin, tmp_path)
        # A user's setting naming the start image field differently than the model's schema.
        monkeypatch.setenv("KLINGFLOW_PROVIDER_START_IMAGE_FIELD", "image_url")
        script = _script(tmp_path, str(tmp_path / "archive"))
        settings = RunSettings(runs_dir=tmp_path / "runs", image_transport="data-uri")
        with pytest.raises(BadRequest, match="image_url") as refused:
            asyncio.run(_render(script, settings))
        assert refused.value.exit_code == 65
        ledger = _get(origin, bundle, "/v1/sandbox/ledger")
    assert ledger["entries"] == []
    store = JobStore.open(RunLayout(tmp_path / "runs" / "real").db_url)
    try:
        assert store.spend("real").committed == 0
    finally:
        store.close()


def _s3_over_tls(authority: trustme.CA, workdir: Path) -> Iterator[str]:
    """moto's S3 served over TLS on loopback (werkzeug with the throwaway CA's certificate)."""
    from moto.server import DomainDispatcherApplication, create_backend_app  # type: ignore[attr-defined]
    from werkzeug.serving import make_server

    cert = authority.issue_cert("127.0.0.1")
    cert_file, key_file = workdir / "s3-cert.pem", workdir / "s3-key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=(str(cert_file), str(key_file)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_presigned_https_urls_from_s3_to_a_realistic_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: tuple[trustme.CA, Path]
) -> None:
    import boto3

    authority, bundle = ca
    with (
        contextlib.contextmanager(_s3_over_tls)(authority, tmp_path) as endpoint,
        realistic_sandbox(authority, bundle, tmp_path) as origin,
    ):
        _environment(monkeypatch, bundle, origin, tmp_path)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
        monkeypatch.setenv("KLINGFLOW_S3_ENDPOINT_URL", endpoint)
        boto3.client("s3", endpoint_url=endpoint, verify=str(bundle)).create_bucket(Bucket="renders")
        script = _script(tmp_path, "s3://renders/klingflow")
        settings = RunSettings(runs_dir=tmp_path / "runs", image_transport="auto")
        result = asyncio.run(_render(script, settings))
        _check_money_and_masters(result, origin, bundle, tmp_path / "runs")
        requests = _get(origin, bundle, "/v1/sandbox/requests")["requests"]
    images = [image for r in requests if not r.get("refused") for image in r["images"].values()]
    assert len(images) == 4
    assert {image["kind"] for image in images} == {"https"}
    assert {image["host"] for image in images} == {"127.0.0.1"}
    assert all(json.dumps(image).count("X-Amz") == 0 for image in images)  # the log keeps no URL


def test_rehearse_runs_the_real_path_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``klingflow run --provider runcomfy --rehearse``: no token configured, nothing real reached."""
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    monkeypatch.setenv("RUNCOMFY_CONFIG_DIR", str(tmp_path / "no-config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    script = _script(tmp_path, str(tmp_path / "archive"))
    settings = RunSettings(runs_dir=tmp_path / "runs", sandbox_latency_scale=0.01, sandbox_render_scale=0.1)

    async def rehearse() -> tuple[Any, Any, Any]:
        loaded = load_script(script)
        plan = build_plan(loaded.script)
        async with open_run(
            loaded, plan, run_id="real", settings=settings, provider="runcomfy", rehearse=True
        ) as session:
            result = await session.run.execute()
            sandbox = session.provider.sandbox
            assert sandbox is not None
            return result, sandbox.ledger(), session.provider.provider.base_url  # type: ignore[attr-defined]

    result, ledger, base_url = asyncio.run(rehearse())
    assert result.delivered, [m.error for m in result.undelivered]
    assert base_url.startswith("https://model-api.rehearsal.runcomfy.net:")
    # 4 chained segments of 10/12/8/10 s and the poster: 5 requests, each charged once.
    assert len(result.jobs) == 5
    assert sorted(e.charge_count for e in ledger) == [1] * 5


@pytest.mark.slow
def test_a_rehearsal_never_takes_the_sandboxs_clips_only_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the same script rendered on the sandbox, ``--rehearse`` still sends every request
    through the rehearsed provider's code path (the clip library keeps rehearsals' clips apart);
    a second rehearsal takes its own earlier clips."""
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    monkeypatch.setenv("RUNCOMFY_CONFIG_DIR", str(tmp_path / "no-config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    script = _script(tmp_path, str(tmp_path / "archive"))
    settings = RunSettings(runs_dir=tmp_path / "runs", sandbox_latency_scale=0.01, sandbox_render_scale=0.1)

    async def render(run_id: str, provider: str, rehearse: bool) -> tuple[Any, int]:
        loaded = load_script(script)
        plan = plan_with_library(loaded, None, provider, rehearse=rehearse)
        async with open_run(
            loaded, plan, run_id=run_id, settings=settings, provider=provider, rehearse=rehearse
        ) as session:
            result = await session.run.execute()
            sandbox = session.provider.sandbox
            assert sandbox is not None
            return result, len(sandbox.ledger())  # type: ignore[attr-defined]

    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path / "runs"))
    plain, _ = asyncio.run(render("plain", "sandbox", False))
    assert plain.delivered and not any(j.reused for j in plain.jobs)
    first, bought = asyncio.run(render("rehearsal-1", "runcomfy", True))
    assert first.delivered and bought == 5 and not any(j.reused for j in first.jobs)
    again, bought = asyncio.run(render("rehearsal-2", "runcomfy", True))
    assert again.delivered and bought == 0 and all(j.reused for j in again.jobs)


def test_a_price_the_provider_does_not_charge_stops_the_run_before_the_first_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider (here the rehearsal's realistic sandbox) publishes another price than
    klingflow's table: the run stops with exit 78 naming both prices, nothing reserved or bought."""
    from decimal import Decimal as D

    from pipeline.errors import ConfigError
    from pipeline.pricing import Tier, rate
    from pipeline.providers.sandbox import schema

    def raised(tier: Tier, audio: bool) -> D:
        return rate(tier, audio) + D("0.01")  # the provider raised its prices

    monkeypatch.setattr(schema, "rate", raised)
    monkeypatch.setenv("RUNCOMFY_CONFIG_DIR", str(tmp_path / "no-config"))
    script = _script(tmp_path, str(tmp_path / "archive"))
    settings = RunSettings(runs_dir=tmp_path / "runs", sandbox_latency_scale=0.01, sandbox_render_scale=0.1)
    ledger: list[Any] = []

    async def rehearse() -> None:
        loaded = load_script(script)
        plan = build_plan(loaded.script)
        async with open_run(
            loaded, plan, run_id="real", settings=settings, provider="runcomfy", rehearse=True
        ) as session:
            try:
                await session.run.execute()
            finally:
                sandbox = session.provider.sandbox
                assert sandbox is not None
                ledger.extend(sandbox.ledger())  # type: ignore[attr-defined]

    with pytest.raises(ConfigError, match=r"\$0\.094.*\$0\.084") as refused:
        asyncio.run(rehearse())
    assert refused.value.exit_code == 78
    assert ledger == []
    store = JobStore.open(RunLayout(tmp_path / "runs" / "real").db_url)
    try:
        assert store.spend("real").committed == 0
    finally:
        store.close()
