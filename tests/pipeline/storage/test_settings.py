"""pipeline.storage.settings: KLINGFLOW_S3_* variables, validation, no secrets."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.storage.settings import MAX_PARTS, MIB, S3Settings, load_s3_settings


def test_defaults() -> None:
    settings = load_s3_settings()
    assert settings.endpoint_url is None
    assert settings.effective_addressing_style == "auto"
    assert settings.multipart_threshold == 64 * MIB
    assert settings.multipart_chunksize == 16 * MIB


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:8333/")
    monkeypatch.setenv("KLINGFLOW_S3_MULTIPART_CHUNKSIZE", str(8 * MIB))
    monkeypatch.setenv("KLINGFLOW_S3_MAX_ATTEMPTS", "3")
    settings = load_s3_settings()
    assert settings.endpoint_url == "http://127.0.0.1:8333"
    assert settings.custom_endpoint
    assert settings.effective_addressing_style == "path"
    assert settings.multipart_chunksize == 8 * MIB
    assert settings.max_attempts == 3


def test_keyword_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGFLOW_S3_REGION", "eu-west-3")
    assert load_s3_settings(region="us-west-2").region == "us-west-2"


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("KLINGFLOW_S3_MULTIPART_CHUNKSIZE", str(4 * MIB), "MULTIPART_CHUNKSIZE"),
        ("KLINGFLOW_S3_ADDRESSING_STYLE", "sideways", "ADDRESSING_STYLE"),
        ("KLINGFLOW_S3_ENDPOINT_URL", "ftp://host", "ENDPOINT_URL"),
        ("KLINGFLOW_S3_MAX_ATTEMPTS", "0", "MAX_ATTEMPTS"),
    ],
)
def test_invalid_values_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"KLINGFLOW_S3_{field}"):
        load_s3_settings()


def test_threshold_below_part_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="multipart_threshold"):
        load_s3_settings(multipart_threshold=8 * MIB, multipart_chunksize=16 * MIB)


def test_credentials_in_endpoint_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="must not contain credentials") as caught:
        load_s3_settings(endpoint_url="http://AKIAEXAMPLE:hunter2-secret@127.0.0.1:8333")
    assert "hunter2-secret" not in str(caught.value)


def test_no_credentials_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value-123")
    monkeypatch.setenv("KLINGFLOW_S3_SECRET_ACCESS_KEY", "very-secret-value-456")  # not a field
    settings = S3Settings()
    assert "very-secret" not in repr(settings)
    assert "very-secret" not in settings.model_dump_json()


def test_part_size_grows_to_stay_under_ten_thousand_parts() -> None:
    settings = load_s3_settings()
    assert settings.part_size_for(100 * MIB) == 16 * MIB
    huge = 16 * MIB * MAX_PARTS * 2
    assert -(-huge // settings.part_size_for(huge)) <= MAX_PARTS
