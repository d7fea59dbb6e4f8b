"""The adapter behaves as RunComfy's official clients do, point by point (issue 11, item 3).

Each test names the file of the official client its behaviour is read from:
- the CLI, ``runcomfy-com/runcomfy-cli`` (Rust): ``src/config.rs``, ``src/api.rs``,
  ``src/cmd/cancel.rs``, ``src/poll.rs``, ``src/download.rs``;
- the MCP server, ``runcomfy-com/runcomfy-mcp``: ``runcomfy_client.py``;
- the ComfyUI partner nodes, ``runcomfy-com/comfyui-runcomfy-partner-nodes``:
  ``runcomfy/client.py``, ``runcomfy/execution.py``, ``runcomfy/pricing.py``,
  ``runcomfy/config.py``, ``scripts/update_model_catalog.py``.
All HTTP goes through ``httpx.MockTransport``: no sockets.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from pipeline.errors import BadRequest, ConfigError, DownloadError, SubmitOutcomeUnknown
from pipeline.generation import GenerationSpec
from pipeline.pricing import Tier, rate
from pipeline.providers.base import JobState
from pipeline.providers.jobs import run_job
from pipeline.providers.latency import LatencyModel
from pipeline.providers.polling import PollPolicy
from pipeline.providers.runcomfy import USER_AGENT, RunComfyProvider
from pipeline.providers.settings import DEFAULT_BASE_URL, ProviderSettings, load_settings
from pipeline.providers.wire import UnreadableAnswer

BASE = "https://model-api.runcomfy.net/v1"
TOKEN = "sk-contract-0123"
SPEC = GenerationSpec(tier=Tier.STANDARD, prompt="Shot 1: a kite", duration=3, seed=1)
MODEL = SPEC.model_id

Handler = Callable[[httpx.Request], httpx.Response]


def provider(handler: Handler, **kw: Any) -> RunComfyProvider:
    settings = ProviderSettings(token=TOKEN, token_file=Path("/nonexistent"), max_attempts=2)
    return RunComfyProvider(
        settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)), **kw
    )


def model_info(**kw: Any) -> dict[str, Any]:
    return {
        "model_id": MODEL,
        "base_price_usd": float(rate(Tier.STANDARD, False)),
        "price_unit": "second",
        **kw,
    }


def token_file(directory: Path, content: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "token.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No explicit token file, no token variable, HOME in tmp: the CLI's own locations apply."""
    monkeypatch.delenv("KLINGFLOW_PROVIDER_TOKEN_FILE", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


# --- token ----------------------------------------------------------------------------------------


def test_token_from_runcomfy_token_trimmed_and_blank_ignored(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLI ``src/config.rs`` ``load_token``: ``RUNCOMFY_TOKEN`` trimmed wins; empty counts as unset."""
    token_file(cli_env / "home/.config/runcomfy", {"access_token": "from-file"})
    monkeypatch.setenv("RUNCOMFY_TOKEN", "  from-env \n")
    assert load_settings().token.get_secret_value() == "from-env"  # type: ignore[union-attr]
    monkeypatch.setenv("RUNCOMFY_TOKEN", "   ")
    assert load_settings().token.get_secret_value() == "from-file"  # type: ignore[union-attr]


def test_token_file_locations_in_the_clis_order(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI ``src/config.rs`` ``config_dir``: ``$RUNCOMFY_CONFIG_DIR``, then
    ``$XDG_CONFIG_HOME/runcomfy``, then ``~/.config/runcomfy``; file ``token.json``."""
    token_file(cli_env / "home/.config/runcomfy", {"access_token": "home"})
    assert load_settings().token.get_secret_value() == "home"  # type: ignore[union-attr]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cli_env / "xdg"))
    token_file(cli_env / "xdg/runcomfy", {"access_token": "xdg"})
    assert load_settings().token.get_secret_value() == "xdg"  # type: ignore[union-attr]
    monkeypatch.setenv("RUNCOMFY_CONFIG_DIR", str(cli_env / "custom"))
    token_file(cli_env / "custom", {"access_token": "custom"})
    assert load_settings().token.get_secret_value() == "custom"  # type: ignore[union-attr]


def test_token_file_access_token_key_and_the_older_token_key(cli_env: Path) -> None:
    """CLI ``src/config.rs`` ``struct Token { access_token, refresh_token, expires_at, ... }``
    (what ``runcomfy login`` writes); klingflow's older ``{"token": ...}`` keeps working."""
    path = token_file(
        cli_env / "home/.config/runcomfy",
        {"access_token": "cli", "refresh_token": "r", "user_email": "a@b.c"},
    )
    assert load_settings().token.get_secret_value() == "cli"  # type: ignore[union-attr]
    path.write_text(json.dumps({"token": "older"}), encoding="utf-8")
    assert load_settings().token.get_secret_value() == "older"  # type: ignore[union-attr]


def test_token_file_must_be_private(cli_env: Path) -> None:
    """CLI ``src/config.rs`` ``write_secure_atomic``: the token file is mode 0600."""
    path = token_file(cli_env / "home/.config/runcomfy", {"access_token": "cli"})
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings()


def test_token_with_whitespace_inside_is_refused_without_showing_it(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partner nodes ``runcomfy/config.py`` ``validate_token``: printable ASCII, no whitespace."""
    monkeypatch.setenv("RUNCOMFY_TOKEN", "sk-abc\nsk-def")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "sk-abc" not in str(info.value) and "sk-def" not in str(info.value)


# --- base URL and headers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  https://staging.example/v1/  ", "https://staging.example/v1"),
        ("https://staging.example/v1//", "https://staging.example/v1"),
        ("   ", DEFAULT_BASE_URL),
    ],
)
def test_base_url_trimmed_as_the_cli_does(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    """CLI ``src/api.rs`` ``base_from_env``: ``v.trim().trim_end_matches('/')``, blank → default."""
    monkeypatch.setenv("RUNCOMFY_MODEL_API_BASE", value)
    assert load_settings().base_url == expected


def test_every_api_call_names_klingflow_and_accepts_json() -> None:
    """CLI ``src/api.rs`` (``user_agent()``: ``runcomfy-cli/<version>``), MCP
    ``runcomfy_client.py`` and partner nodes ``runcomfy/client.py`` (both send
    ``Accept: application/json`` and their own User-Agent)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST" and request.url.path.endswith("/cancel"):
            return httpx.Response(
                200, json={"request_id": "r", "status": "cancelled", "outcome": "cancelled"}
            )
        if request.method == "POST":
            return httpx.Response(200, json={"request_id": "r"})
        if request.url.path.startswith("/v1/models/"):
            return httpx.Response(200, json=model_info())
        return httpx.Response(200, json={"request_id": "r", "status": "in_queue"})

    async def go() -> None:
        async with provider(handler) as p:
            await p.preflight([SPEC])
            await p.submit(SPEC)
            await p.status("r")
            await p.result("r")
            await p.cancel("r")

    asyncio.run(go())
    assert len(seen) == 5
    assert USER_AGENT.startswith("klingflow/")
    for request in seen:
        assert request.headers["user-agent"] == USER_AGENT
        assert request.headers["accept"] == "application/json"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_the_token_never_goes_to_a_download_url(tmp_path: Path) -> None:
    """CLI ``src/download.rs`` ``download_file`` ("deliberately sent *without* the bearer
    token … the token must never leave the RunComfy API hosts"); partner nodes
    ``runcomfy/client.py`` ("Authentication stays on the selected RunComfy origin, never on
    output URLs"). Holds for the API client and for a separate download client."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404)

    download_client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    for kw in ({}, {"download_client": download_client}):
        with pytest.raises(DownloadError):
            asyncio.run(
                provider(handler, **kw).download("https://cdn.runcomfy.net/v/1.mp4", tmp_path / "a.mp4", SPEC)
            )
    assert len(seen) == 2
    assert all("authorization" not in r.headers for r in seen)


def test_a_client_with_a_default_authorization_header_is_refused() -> None:
    """Same source as above: a client-wide Authorization header would reach the CDN."""
    leaky = httpx.AsyncClient(headers={"Authorization": "Bearer x"})
    settings = ProviderSettings(token=TOKEN, token_file=Path("/nonexistent"))
    with pytest.raises(ConfigError, match="Authorization"):
        RunComfyProvider(settings, http_client=leaky)
    with pytest.raises(ConfigError, match="Authorization"):
        RunComfyProvider(settings, download_client=leaky)


def test_tls_trust_is_httpx_s_own_and_honours_ssl_cert_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 11 item 3: a company CA in ``SSL_CERT_FILE`` works as users expect (the CLI's
    reqwest and the MCP server's httpx both use the platform/certifi trust store as is)."""
    ca = trustme.CA()
    pem = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    owned = RunComfyProvider(ProviderSettings(token=TOKEN, token_file=Path("/nonexistent")))
    context: ssl.SSLContext = owned._client._transport._pool._ssl_context  # type: ignore[attr-defined]
    issuers = [str(cert["subject"]) for cert in context.get_ca_certs()]
    assert any("trustme" in str(issuer).lower() for issuer in issuers), issuers
    asyncio.run(owned.aclose())


# --- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "cancelled", "billing"),
    [
        ({"request_id": "r", "status": "cancelled"}, True, False),
        ({"request_id": "r", "status": "in_progress"}, False, True),
        ({"request_id": "r", "status": "completed"}, False, True),
        ({"request_id": "r", "status": "failed"}, False, False),
        ({"request_id": "r"}, False, True),  # nothing said: assume it still bills
    ],
)
def test_cancel_without_outcome_is_read_from_its_status(
    answer: dict[str, str], cancelled: bool, billing: bool
) -> None:
    """CLI ``src/cmd/cancel.rs`` (``outcome: Option<String>``) and ``src/poll.rs`` (falls back
    to ``status``); partner nodes ``runcomfy/execution.py`` (``status == 'cancelled' or
    outcome == 'cancelled'``)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    outcome = asyncio.run(provider(handler).cancel("r"))
    assert (outcome.cancelled, outcome.still_billing) == (cancelled, billing)
    if cancelled:
        assert outcome.state is JobState.CANCELLED


def test_a_200_with_error_code_is_an_error() -> None:
    """MCP ``runcomfy_client.py`` ``_request``: "Some RunComfy APIs signal errors with HTTP 200
    plus a top-level {"error_code": ..., "error_message": ...} body. Treat those as errors."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error_code": 500001, "error_message": "internal"})

    with pytest.raises(UnreadableAnswer, match="500001"):
        asyncio.run(provider(handler).status("r"))


def test_a_paid_submit_is_never_retried_after_an_unreadable_answer() -> None:
    """Partner nodes ``runcomfy/client.py`` ``submit``: "Never retry a paid POST"; an
    unreadable answer is an unknown submission, not a failure."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="<html>gateway</html>")

    with pytest.raises(SubmitOutcomeUnknown):
        asyncio.run(provider(handler).submit(SPEC))
    assert len(seen) == 1


def test_result_is_polled_with_include_cost_and_saves_a_call(tmp_path: Path) -> None:
    """Partner nodes ``runcomfy/client.py`` (``result``: ``params={'include_cost': 'true'}``)
    and ``runcomfy/execution.py`` (polls ``client.result`` only: state, output and cost in
    one answer). A finished request costs no separate result call."""
    seen: list[httpx.Request] = []
    done = {
        "request_id": "r",
        "status": "completed",
        "output": {"video": "https://cdn.runcomfy.net/v/r.mp4"},
        "cost": 0.252,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(200, json={"request_id": "r"})
        if request.url.path.endswith("/result"):
            return httpx.Response(200, json=done)
        return httpx.Response(404)  # the clip: the download fails, which ends the job here

    policy = PollPolicy(latency=LatencyModel(scale=0.0001))
    report = asyncio.run(run_job(provider(handler), SPEC, tmp_path / "r.mp4", policy=policy))
    api = [r for r in seen if r.url.host == "model-api.runcomfy.net"]
    assert [(r.method, r.url.path) for r in api] == [
        ("POST", f"/v1/models/{MODEL}"),
        ("GET", "/v1/requests/r/result"),
    ]
    assert api[1].url.params["include_cost"] == "true"
    assert report.result is not None and str(report.result.cost_usd) == "0.252"


# --- model info before paying -------------------------------------------------------------------


def test_price_is_read_from_the_model_and_must_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partner nodes ``runcomfy/pricing.py`` ``parse_price`` (``model_id``, ``price_unit`` and a
    numeric ``base_price_usd`` from ``GET /v1/models/{id}``, refused otherwise) and
    ``runcomfy/execution.py`` (the price is read before the paid submit)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=model_info(base_price_usd=0.1))

    with pytest.raises(ConfigError) as info:
        asyncio.run(provider(handler).preflight([SPEC]))
    assert "$0.1/second" in str(info.value) and "$0.084/second" in str(info.value)
    assert [(r.method, r.url.path) for r in seen] == [("GET", f"/v1/models/{MODEL}")]


def test_input_schema_is_read_under_its_catalog_name() -> None:
    """Partner nodes ``scripts/update_model_catalog.py`` ``curate``: the catalog entry's schema
    is ``entry["input_schema"]``, and its ``"float"`` type means ``number``."""
    schema = {
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "duration": {"type": "integer", "minimum": 3, "maximum": 15},
            "aspect_ratio": {"type": "string", "enum": ["16:9", "9:16", "1:1"]},
            "cfg_scale": {"type": "float"},
            "generate_audio": {"type": "boolean"},
            "seed": {"type": "integer"},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=model_info(input_schema=schema))

    asyncio.run(provider(handler).preflight([SPEC]))  # fits
    with pytest.raises(BadRequest, match="aspect_ratio"):
        asyncio.run(
            provider(handler).preflight([GenerationSpec(**{**SPEC.__dict__, "aspect_ratio": "21:9"})])
        )


def test_a_huge_error_body_is_quoted_truncated() -> None:
    """CLI ``src/api.rs`` ``truncate_error_body``: at most 300 characters of a provider's text."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error_code": 400001, "error_message": "x" * 5000, "detail": "y" * 5000}
        )

    with pytest.raises(BadRequest) as info:
        asyncio.run(provider(handler).status("r"))
    assert len(str(info.value)) < 800 and "truncated" in str(info.value)
