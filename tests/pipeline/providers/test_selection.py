"""Choosing and opening the provider: RunComfy with a token, the sandbox without, rehearsals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.errors import AuthError, ConfigError
from pipeline.pricing import Tier
from pipeline.providers.runcomfy import RunComfyProvider
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.server import SandboxHandle
from pipeline.providers.selection import OpenedProvider, ProviderName, choose_provider, open_provider
from pipeline.providers.settings import ProviderSettings

NO_FILE = Path("/nonexistent/token.json")


def _runcomfy(opened: OpenedProvider) -> RunComfyProvider:
    """The RunComfy adapter behind ``opened`` (the sandbox and rehearsals use it too)."""
    assert isinstance(opened.provider, RunComfyProvider)
    return opened.provider


def _settings(token: str | None = None, **overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {"token_file": NO_FILE, "max_attempts": 2, **overrides}
    if token is not None:
        values["token"] = SecretStr(token)
    return ProviderSettings(**values)


# --- choose_provider ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "token", "rehearse", "expected"),
    [
        (None, None, False, ProviderName.SANDBOX),
        (None, "tok", False, ProviderName.RUNCOMFY),
        (None, None, True, ProviderName.RUNCOMFY),  # a rehearsal brings its own token
        ("sandbox", "tok", False, ProviderName.SANDBOX),
        ("runcomfy", "tok", False, ProviderName.RUNCOMFY),
        ("runcomfy", None, True, ProviderName.RUNCOMFY),
    ],
)
def test_choose_provider(
    requested: str | None, token: str | None, rehearse: bool, expected: ProviderName
) -> None:
    assert choose_provider(requested, _settings(token), rehearse=rehearse) is expected


def test_runcomfy_without_a_token_is_an_auth_error_not_a_fallback() -> None:
    with pytest.raises(AuthError, match="no RunComfy token") as caught:
        choose_provider("runcomfy", _settings(None))
    assert caught.value.exit_code == 77
    with pytest.raises(AuthError):
        choose_provider("runcomfy", _settings("   "))  # a blank token is no token


def test_unknown_provider_and_rehearsing_the_sandbox_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match="unknown provider 'replicate': use one of runcomfy, fal, kling, sandbox"
    ):
        choose_provider("replicate", _settings("tok"))
    with pytest.raises(ConfigError, match="--provider runcomfy, fal or kling"):
        choose_provider("sandbox", _settings(None), rehearse=True)


@pytest.mark.parametrize(
    ("requested", "variables"),
    [("fal", "FAL_KEY"), ("kling", "KLING_ACCESS_KEY and KLING_SECRET_KEY")],
)
def test_fal_and_kling_need_their_keys_unless_rehearsing(requested: str, variables: str) -> None:
    with pytest.raises(AuthError, match=f"set {variables}, or rehearse with --rehearse") as caught:
        choose_provider(requested, _settings("tok"), has_key=lambda name: False)
    assert caught.value.exit_code == 77
    assert choose_provider(requested, _settings(None), has_key=lambda name: True).value == requested
    assert (
        choose_provider(requested, _settings(None), rehearse=True, has_key=lambda name: False).value
        == requested
    )


def test_keys_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AuthError, match="FAL_KEY"):
        choose_provider("fal", _settings(None))
    monkeypatch.setenv("FAL_KEY", "fal-key")
    monkeypatch.setenv("KLING_ACCESS_KEY", "ak")
    with pytest.raises(AuthError, match="KLING_SECRET_KEY"):
        choose_provider("kling", _settings(None))
    monkeypatch.setenv("KLING_SECRET_KEY", "sk")
    assert choose_provider("fal", _settings(None)) is ProviderName.FAL
    assert choose_provider("kling", _settings(None)) is ProviderName.KLING


# --- open_provider --------------------------------------------------------------------------


def test_in_process_sandbox_serves_model_info() -> None:
    async def main() -> None:
        config = SandboxConfig(latency_scale=0.005, render_scale=0.1)
        async with open_provider(None, _settings(), sandbox_config=config) as opened:
            assert opened.name is ProviderName.SANDBOX
            assert opened.provider.name == "sandbox"
            assert opened.images.name == "sandbox-upload"
            assert opened.sandbox_base_url is not None
            assert opened.sandbox_base_url.startswith("http://127.0.0.1:")
            assert isinstance(opened.sandbox, SandboxHandle)
            assert opened.sandbox.config is config
            assert _runcomfy(opened).settings.token is None
            info = await _runcomfy(opened).model_info("kling/kling-3.0/standard/text-to-video")
            assert info.model_id == "kling/kling-3.0/standard/text-to-video"

    asyncio.run(main())


def test_sandbox_url_uses_the_running_sandbox(sandbox: SandboxHandle) -> None:
    async def main() -> None:
        async with open_provider("sandbox", _settings("tok"), sandbox_url=sandbox.base_url + "/") as opened:
            assert opened.sandbox_base_url == sandbox.base_url
            assert opened.sandbox is None
            assert _runcomfy(opened).base_url == sandbox.base_url
            assert _runcomfy(opened).settings.token is None  # the real token never goes to a sandbox
            assert _runcomfy(opened).download_policy.origins == (sandbox.origin,)

    asyncio.run(main())


def test_runcomfy_uses_injected_clients_and_leaves_them_open() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        model_id = request.url.path.removeprefix("/v1/models/")
        return httpx.Response(200, json={"model_id": model_id, "base_price_usd": 0.084})

    async def main() -> None:
        api = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        cdn = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        async with open_provider(
            "runcomfy",
            _settings("secret-token"),
            http_client=api,
            download_client=cdn,
            image_transport="data-uri",
        ) as opened:
            assert opened.name is ProviderName.RUNCOMFY and not opened.rehearsal
            assert opened.sandbox is None and opened.sandbox_base_url is None
            assert opened.images.name == "data-uri"
            info = await _runcomfy(opened).model_info(f"kling/kling-3.0/{Tier.PRO.value}/text-to-video")
            assert info.model_id.endswith("text-to-video")
        assert not api.is_closed and not cdn.is_closed  # the caller's clients stay the caller's
        await api.aclose()
        await cdn.aclose()

    asyncio.run(main())
    assert len(seen) == 1
    assert seen[0].url.host == "model-api.runcomfy.net"
    assert seen[0].headers["authorization"] == "Bearer secret-token"


@pytest.mark.parametrize(
    ("setting", "archive", "expected"),
    [("auto", None, "data-uri"), ("auto", "s3://bucket/renders", "s3"), ("s3", "s3://bucket/x", "s3")],
)
def test_runcomfy_image_transport_is_chosen(
    setting: str,
    archive: str | None,
    expected: str,
    isolated_aws_environment: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Dummy credentials: the S3 transport makes its client at once, and nothing is sent.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "kf-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "kf-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    async def main() -> str:
        async with open_provider(
            "runcomfy", _settings("tok"), image_transport=setting, archive=archive
        ) as opened:
            return opened.images.name

    assert asyncio.run(main()) == expected


def test_a_bad_image_transport_is_a_config_error() -> None:
    async def main() -> None:
        async with open_provider("runcomfy", _settings("tok"), image_transport="ftp"):
            pass

    with pytest.raises(ConfigError, match="KLINGFLOW_IMAGE_TRANSPORT"):
        asyncio.run(main())


def test_rehearsal_opens_runcomfy_against_its_own_sandbox() -> None:
    async def main() -> None:
        async with open_provider(None, _settings(None), rehearse=True) as opened:
            assert opened.name is ProviderName.RUNCOMFY and opened.rehearsal
            assert opened.provider.name == "runcomfy"
            assert _runcomfy(opened).base_url.startswith("https://model-api.rehearsal.runcomfy.net:")
            assert _runcomfy(opened).settings.has_token
            assert isinstance(opened.sandbox, SandboxHandle) and opened.sandbox.config.realistic
            assert opened.images.name == "data-uri"  # the real path's transport, not uploads
            info = await _runcomfy(opened).model_info("kling/kling-3.0/standard/text-to-video")
            assert info.input_schema is not None
            assert "properties" in json.loads(json.dumps(info.input_schema))

    asyncio.run(main())
