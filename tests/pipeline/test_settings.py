"""One Settings: every section loaded by one loader, errors named by variable, never by value."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import env_name, load_settings, settings_table


def test_sections_read_their_documented_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KLINGFLOW_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("KLINGFLOW_S3_REGION", "eu-west-3")
    monkeypatch.setenv("KLINGFLOW_PROVIDER_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("KLINGFLOW_SANDBOX_LATENCY_SCALE", "0.5")
    monkeypatch.setenv("RUNCOMFY_TOKEN", "sk-test")
    settings = load_settings(run={"max_in_flight": 3, "submit_burst": None})
    assert settings.run.runs_dir == tmp_path and settings.run.max_in_flight == 3
    assert settings.run.submit_burst == 4  # a flag left unset is not given
    assert settings.s3.region == "eu-west-3"
    assert settings.provider.max_attempts == 3 and settings.provider.has_token
    assert settings.sandbox.latency_scale == 0.5


def test_a_bad_value_names_its_variable_not_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCOMFY_TOKEN", "sk-hidden")
    monkeypatch.setenv("KLINGFLOW_PROVIDER_MAX_ATTEMPTS", "many-sk-hidden")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "KLINGFLOW_PROVIDER_MAX_ATTEMPTS" in message and "max_attempts" in message
    assert "sk-hidden" not in message and info.value.__cause__ is None


def test_a_bad_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="KLINGFLOW_MAX_IN_FLIGHT"):
        load_settings(run={"max_in_flight": 0})
    with pytest.raises(TypeError):
        load_settings(nope={"x": 1})


def test_aliases_are_the_official_clis_names() -> None:
    from pipeline.providers.settings import ProviderSettings

    assert env_name(ProviderSettings, "token") == "RUNCOMFY_TOKEN"
    assert env_name(ProviderSettings, "base_url") == "RUNCOMFY_MODEL_API_BASE"
    assert env_name(ProviderSettings, "cdn_domains") == "KLINGFLOW_PROVIDER_CDN_DOMAINS"


def test_tables_never_show_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCOMFY_TOKEN", "sk-hidden")
    assert "sk-hidden" not in settings_table("provider")
    assert settings_table("run").startswith("| variable | default | meaning |\n|---|---|---|\n")
