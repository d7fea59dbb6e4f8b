"""Kling settings: the key pair from KLING_ACCESS_KEY / KLING_SECRET_KEY, never shown."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.providers.kling_settings import DEFAULT_BASE_URL, KlingSettings, load_kling_settings
from pipeline.settings import load_settings


def test_the_keys_come_from_the_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", "ak-env")
    monkeypatch.setenv("KLING_SECRET_KEY", "sk-env-secret")
    monkeypatch.setenv("KLINGFLOW_KLING_BASE_URL", "https://api.klingai.com/ ")
    settings = load_kling_settings()
    assert settings.has_keys
    assert settings.access_key is not None and settings.access_key.get_secret_value() == "ak-env"
    assert settings.base_url == "https://api.klingai.com"
    assert "sk-env-secret" not in repr(settings) and "ak-env" not in repr(settings)
    assert load_settings().kling == settings  # a section of the one settings value


def test_blank_keys_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", "  ")
    monkeypatch.delenv("KLING_SECRET_KEY", raising=False)
    settings = KlingSettings()
    assert settings.access_key is None and not settings.has_keys
    assert settings.base_url == DEFAULT_BASE_URL


def test_a_bad_value_names_its_variable_not_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_KLING_TOKEN_TTL_S", "5")
    with pytest.raises(ConfigError, match="KLINGFLOW_KLING_TOKEN_TTL_S"):
        load_kling_settings()
