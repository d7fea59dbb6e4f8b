"""Provider settings: environment, token file, precedence, secrecy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.providers.settings import DEFAULT_BASE_URL, ProviderSettings, load_settings


def _token_file(tmp_path: Path, token: str, mode: int = 0o600) -> Path:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"token": token}))
    path.chmod(mode)
    return path


def test_defaults_without_anything(tmp_path: Path) -> None:
    settings = load_settings(token_file=tmp_path / "missing.json")
    assert settings.token is None and not settings.has_token
    assert settings.base_url == DEFAULT_BASE_URL


def test_environment_names_of_the_official_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCOMFY_TOKEN", "env-token")
    monkeypatch.setenv("RUNCOMFY_MODEL_API_BASE", "http://example.test/v1")
    monkeypatch.setenv("KLINGFLOW_PROVIDER_MAX_ATTEMPTS", "7")
    settings = load_settings()
    assert settings.token is not None and settings.token.get_secret_value() == "env-token"
    assert settings.base_url == "http://example.test/v1"
    assert settings.max_attempts == 7


def test_token_file_is_read(tmp_path: Path) -> None:
    settings = load_settings(token_file=_token_file(tmp_path, "file-token"))
    assert settings.has_token and settings.token is not None
    assert settings.token.get_secret_value() == "file-token"


def test_precedence_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _token_file(tmp_path, "file-token")
    monkeypatch.setenv("RUNCOMFY_TOKEN", "env-token")
    from_env = load_settings(token_file=path)
    assert from_env.token is not None and from_env.token.get_secret_value() == "env-token"
    from_flag = load_settings(token_file=path, token="flag-token")
    assert from_flag.token is not None and from_flag.token.get_secret_value() == "flag-token"


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _token_file(tmp_path, "file-token", mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_settings(token_file=path)
    assert "file-token" not in str(info.value)


def test_broken_token_file_names_the_file_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text("secret-but-not-json")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_settings(token_file=path)
    assert str(path) in str(info.value) and "secret-but-not-json" not in str(info.value)


def test_token_hidden_in_repr_and_errors(tmp_path: Path) -> None:
    settings = ProviderSettings(token="sk-hidden", token_file=tmp_path / "none")
    assert "sk-hidden" not in repr(settings) and "sk-hidden" not in str(settings)
    with pytest.raises(ConfigError) as info:
        load_settings(token="sk-hidden", max_attempts="many")
    assert "max_attempts" in str(info.value)
    assert "sk-hidden" not in str(info.value) and info.value.__cause__ is None


def _cli_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME in tmp with a CLI login in ~/.config/runcomfy/token.json; no other variable set."""
    for name in ("RUNCOMFY_TOKEN", "RUNCOMFY_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    directory = tmp_path / "home/.config/runcomfy"
    directory.mkdir(parents=True)
    path = directory / "token.json"
    path.write_text(json.dumps({"access_token": "cli-login"}))
    path.chmod(0o600)
    return path


def test_an_explicit_token_file_is_the_only_one_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _cli_home(monkeypatch, tmp_path)
    # Set but absent: no token, even though the CLI's login exists (tests and CI rely on this).
    monkeypatch.setenv("KLINGFLOW_PROVIDER_TOKEN_FILE", str(tmp_path / "absent.json"))
    assert load_settings().token is None
    monkeypatch.setenv("KLINGFLOW_PROVIDER_TOKEN_FILE", str(_token_file(tmp_path, "explicit")))
    assert load_settings().token.get_secret_value() == "explicit"  # type: ignore[union-attr]


def test_unset_or_blank_token_file_means_the_clis_locations(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cli_home(monkeypatch, tmp_path)
    monkeypatch.delenv("KLINGFLOW_PROVIDER_TOKEN_FILE", raising=False)
    assert load_settings().token.get_secret_value() == "cli-login"  # type: ignore[union-attr]
    monkeypatch.setenv("KLINGFLOW_PROVIDER_TOKEN_FILE", " ")
    assert load_settings().token.get_secret_value() == "cli-login"  # type: ignore[union-attr]


def test_an_empty_config_dir_falls_through_to_the_next_location(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # First existing file wins (the CLI itself reads only $RUNCOMFY_CONFIG_DIR when it is set).
    _cli_home(monkeypatch, tmp_path)
    monkeypatch.delenv("KLINGFLOW_PROVIDER_TOKEN_FILE", raising=False)
    monkeypatch.setenv("RUNCOMFY_CONFIG_DIR", str(tmp_path / "empty"))
    assert load_settings().token.get_secret_value() == "cli-login"  # type: ignore[union-attr]


def test_a_token_file_without_a_token_names_the_expected_key(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"refresh_token": "r"}))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="access_token"):
        load_settings(token_file=path)
