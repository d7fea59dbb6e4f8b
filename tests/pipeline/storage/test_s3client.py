"""pipeline.storage.s3client: the one client factory (settings, checksums, credentials)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import StorageAuthError
from pipeline.storage.s3client import make_s3_client
from pipeline.storage.settings import S3Settings

from ...conftest import S3Target


def test_custom_endpoint_client_settings(moto_s3: S3Target) -> None:
    client = make_s3_client(
        S3Settings(endpoint_url=moto_s3.endpoint, max_attempts=4), session=moto_s3.session()
    )
    config: Any = client.meta.config
    assert client.meta.endpoint_url == moto_s3.endpoint
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 is not None
    assert config.s3["addressing_style"] == "path"
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert client.meta.region_name == "us-east-1"


def test_aws_client_keeps_boto3_checksums(moto_s3: S3Target) -> None:
    client = make_s3_client(S3Settings(region="eu-west-3"), session=moto_s3.session())
    config: Any = client.meta.config
    assert config.request_checksum_calculation == "when_supported"
    assert client.meta.region_name == "eu-west-3"
    assert "amazonaws.com" in client.meta.endpoint_url


def test_credentials_come_from_the_standard_chain(monkeypatch: pytest.MonkeyPatch, moto_s3: S3Target) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
    client = make_s3_client(S3Settings(endpoint_url=moto_s3.endpoint))
    assert client.head_bucket(Bucket=moto_s3.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_no_credentials_at_all(moto_s3: S3Target) -> None:
    with pytest.raises(StorageAuthError, match="no AWS credentials found"):
        make_s3_client(S3Settings(endpoint_url=moto_s3.endpoint))


def test_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(StorageAuthError, match="nobody"):
        make_s3_client(S3Settings())
