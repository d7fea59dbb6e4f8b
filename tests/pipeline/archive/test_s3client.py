"""pipeline.archive.s3client: the one factory, and botocore errors translated completely."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import botocore.exceptions
import pytest

from pipeline.archive.archiver import archive_run
from pipeline.archive.s3client import (
    AUTH_CODES,
    CONFLICT_CODES,
    MISSING_BUCKET_CODES,
    UNAVAILABLE_CODES,
    make_s3_client,
    translate_s3_error,
)
from pipeline.archive.settings import S3Settings
from pipeline.errors import ArchiveAuthError, ArchiveConflict, ArchiveError, ArchiveUnavailable

from .conftest import S3Target


def client_error(
    code: str, status: int = 400, operation: str = "PutObject"
) -> botocore.exceptions.ClientError:
    """A ClientError as botocore builds it from a reply (HEAD replies have no error body)."""
    error = {"Code": code, "Message": f"message of {code}"} if not code.isdigit() else {"Code": code}
    return botocore.exceptions.ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        operation,
    )


def test_custom_endpoint_client_settings(moto_s3: S3Target) -> None:
    client = make_s3_client(
        S3Settings(endpoint_url=moto_s3.endpoint, max_attempts=4), session=moto_s3.session()
    )
    config = client.meta.config
    assert client.meta.endpoint_url == moto_s3.endpoint
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 is not None
    assert config.s3["addressing_style"] == "path"
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert client.meta.region_name == "us-east-1"


def test_aws_client_keeps_boto3_checksums(moto_s3: S3Target) -> None:
    client = make_s3_client(S3Settings(region="eu-west-3"), session=moto_s3.session())
    assert client.meta.config.request_checksum_calculation == "when_supported"
    assert client.meta.region_name == "eu-west-3"
    assert "amazonaws.com" in client.meta.endpoint_url


def test_credentials_come_from_the_standard_chain(monkeypatch: pytest.MonkeyPatch, moto_s3: S3Target) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
    client = make_s3_client(S3Settings(endpoint_url=moto_s3.endpoint))
    assert client.head_bucket(Bucket=moto_s3.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_no_credentials_at_all(moto_s3: S3Target) -> None:
    with pytest.raises(ArchiveAuthError, match="no AWS credentials found"):
        make_s3_client(S3Settings(endpoint_url=moto_s3.endpoint))


def test_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(ArchiveAuthError, match="nobody"):
        make_s3_client(S3Settings())


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (AUTH_CODES, ArchiveAuthError),
        (MISSING_BUCKET_CODES, ArchiveUnavailable),
        (CONFLICT_CODES, ArchiveConflict),
        (UNAVAILABLE_CODES, ArchiveUnavailable),
        (
            frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "EntityTooSmall"}),
            ArchiveError,
        ),
    ],
)
def test_every_client_error_code_maps(codes: frozenset[str], expected: type[ArchiveError]) -> None:
    for code in codes:
        error = translate_s3_error(client_error(code), what="uploading x")
        assert type(error) is expected, code
        assert error.exit_code == expected.exit_code
        assert str(error).startswith("uploading x: ")


def test_a_bare_404_is_a_missing_bucket_only_for_bucket_calls() -> None:
    bucket_call = translate_s3_error(client_error("404", 404, "HeadBucket"), what="opening", bucket="b1")
    assert isinstance(bucket_call, ArchiveUnavailable)
    assert "bucket b1 does not exist" in str(bucket_call)
    assert type(translate_s3_error(client_error("404", 404), what="reading")) is ArchiveError


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), ArchiveUnavailable),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), ArchiveUnavailable),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), ArchiveUnavailable),
        (botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"), ArchiveUnavailable),
        (botocore.exceptions.NoCredentialsError(), ArchiveAuthError),
        (botocore.exceptions.PartialCredentialsError(provider="env", cred_var="secret"), ArchiveAuthError),
        (botocore.exceptions.ProfileNotFound(profile="p"), ArchiveAuthError),
        (botocore.exceptions.ParamValidationError(report="bad"), ArchiveError),
    ],
)
def test_botocore_errors_map(exc: Exception, expected: type[ArchiveError]) -> None:
    assert type(translate_s3_error(exc, what="x")) is expected


def test_no_secret_in_any_log_record(
    caplog: pytest.LogCaptureFixture, make_run: Callable[..., Path], seaweedfs: S3Target
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, botocore's debug output included
    archive = seaweedfs.archive()
    run_dir = make_run()

    archive_run(run_dir, archive)

    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert seaweedfs.secret_key not in caplog.text
