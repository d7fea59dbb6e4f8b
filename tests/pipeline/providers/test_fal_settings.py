"""fal's settings: the key from FAL_KEY, never shown; bad values named, never repeated."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.providers.fal_settings import load_fal_settings


def test_the_key_comes_from_fal_key_and_blank_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "  abc:def  ")
    settings = load_fal_settings()
    assert settings.has_key and settings.key is not None and settings.key.get_secret_value() == "abc:def"
    assert "abc" not in repr(settings)
    monkeypatch.setenv("FAL_KEY", "   ")
    assert not load_fal_settings().has_key


def test_other_settings_use_the_klingflow_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_FAL_QUEUE_URL", "https://queue.example/ ")
    monkeypatch.setenv("KLINGFLOW_FAL_VOICES", "0")
    settings = load_fal_settings()
    assert settings.queue_url == "https://queue.example" and not settings.voices


def test_bad_values_name_the_variable_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_FAL_MAX_ATTEMPTS", "zero-ish-secret")
    with pytest.raises(ConfigError, match="KLINGFLOW_FAL_MAX_ATTEMPTS") as caught:
        load_fal_settings()
    assert "zero-ish-secret" not in str(caught.value)
    monkeypatch.delenv("KLINGFLOW_FAL_MAX_ATTEMPTS")
    with pytest.raises(ConfigError, match=r"\{n\}"):
        load_fal_settings(voice_token="<<<voice>>>")
