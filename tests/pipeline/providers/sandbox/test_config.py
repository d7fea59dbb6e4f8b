"""The sandbox's knobs: validation of the CDN base URL, the realistic-mode token, fault rates."""

from __future__ import annotations

import pydantic
import pytest

from pipeline.errors import ConfigError
from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig


def test_uniform_faults_set_every_rate_and_the_seed() -> None:
    faults = FaultConfig.uniform(0.2, seed=7)

    rates = faults.model_dump(exclude={"seed", "slow_delay_s"})
    assert set(rates.values()) == {0.2} and len(rates) == 9
    assert faults.seed == 7


def test_rates_outside_zero_to_one_and_unknown_knobs_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        FaultConfig(drop=1.5)
    with pytest.raises(pydantic.ValidationError):
        SandboxConfig(latency_scale=0.1, gpus=3)  # type: ignore[call-arg]


def test_a_realistic_sandbox_needs_a_non_blank_token() -> None:
    with pytest.raises(ConfigError, match="requires a bearer token"):
        SandboxConfig(realistic=True)
    with pytest.raises(ConfigError, match="requires a bearer token"):
        SandboxConfig(realistic=True, token=pydantic.SecretStr("   "))
    config = SandboxConfig(realistic=True, token=pydantic.SecretStr("t0ken"))
    assert "t0ken" not in repr(config)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://cdn.example", "expected an http"),
        ("https://", "expected an http"),
        ("https://cdn.example:99999", "bad port"),
        ("https://cdn.example/?sig=1", "no query"),
        ("https://user@cdn.example", "no query, fragment or user name"),
        ("https://cdn.example/v1", "must not start with /v1"),
        ("https://cdn.example/v1/videos", "must not start with /v1"),
    ],
)
def test_a_bad_cdn_base_url_is_refused_naming_the_flag(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        SandboxConfig(cdn_base_url=url)
    assert "--cdn-base-url" in str(caught.value)


def test_video_base_defaults_to_the_servers_own_cdn_path() -> None:
    config = SandboxConfig()

    assert config.video_base("http://127.0.0.1:8080", 8080) == "http://127.0.0.1:8080/cdn"
    assert config.cdn_path == "/cdn"


def test_a_cdn_base_without_a_port_takes_the_port_the_client_used() -> None:
    config = SandboxConfig(cdn_base_url=" https://cdn-sandbox.example/media/ ")

    assert config.cdn_base_url == "https://cdn-sandbox.example/media"  # trimmed, no trailing slash
    assert config.video_base("https://127.0.0.1:8443", 8443) == "https://cdn-sandbox.example:8443/media"
    assert config.video_base("https://127.0.0.1", None) == "https://cdn-sandbox.example/media"
    assert config.cdn_path == "/media"


def test_an_ipv6_cdn_base_keeps_its_brackets_when_the_port_is_filled_in() -> None:
    config = SandboxConfig(cdn_base_url="https://[::1]/media")
    assert config.video_base("https://[::1]:8443", 8443) == "https://[::1]:8443/media"
