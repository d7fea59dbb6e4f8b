"""pipeline.storage.errors: the one mapping of botocore's errors to ours, complete and exact.

The codes pinned here are S3's own: 412 PreconditionFailed and 409 ConditionalRequestConflict
for a lost ``If-None-Match: *`` write (AWS S3 user guide, "conditional-writes"; the SDK reference
of PutObject/CompleteMultipartUpload ``IfNoneMatch``), 304 for a GET whose ``If-None-Match``
ETag still matches (RFC 7232 §4.1), and HEAD replies carrying only their HTTP status.
"""

from __future__ import annotations

import botocore.exceptions
import pytest

from pipeline.errors import (
    EXIT_CANTCREAT,
    EXIT_IOERR,
    EXIT_NOPERM,
    EXIT_UNAVAILABLE,
    ArchiveAuthError,
    ArchiveConflict,
    ArchiveError,
    ArchiveUnavailable,
    StorageAuthError,
    StorageConflict,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
)
from pipeline.storage.errors import (
    AUTH_CODES,
    CONFLICT_CODES,
    MISSING_BUCKET_CODES,
    NOT_FOUND_CODES,
    NOT_MODIFIED_CODES,
    UNAVAILABLE_CODES,
    NotModified,
    error_code,
    from_s3,
    map_s3_errors,
    translate_s3_error,
)
from pipeline.storage.files import translate_os_error


def client_error(
    code: str, status: int = 400, operation: str = "PutObject"
) -> botocore.exceptions.ClientError:
    """A ClientError as botocore builds it from a reply (HEAD replies have no error body)."""
    error = {"Code": code, "Message": f"message of {code}"} if not code.isdigit() else {"Code": code}
    return botocore.exceptions.ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        operation,
    )


#: Every code klingflow relies on, with the class an object-level call maps it to. The
#: completeness test below fails when a code is added to a set without being pinned here.
EXPECTED: dict[str, type[StorageError]] = {
    "AccessDenied": StorageAuthError,
    "AllAccessDisabled": StorageAuthError,
    "ExpiredToken": StorageAuthError,
    "InvalidAccessKeyId": StorageAuthError,
    "InvalidToken": StorageAuthError,
    "SignatureDoesNotMatch": StorageAuthError,
    "TokenRefreshRequired": StorageAuthError,
    "401": StorageAuthError,
    "403": StorageAuthError,
    "NoSuchBucket": StorageUnavailable,
    "PreconditionFailed": StorageConflict,
    "ConditionalRequestConflict": StorageConflict,
    "412": StorageConflict,
    "409": StorageConflict,
    "InternalError": StorageUnavailable,
    "ServiceUnavailable": StorageUnavailable,
    "SlowDown": StorageUnavailable,
    "RequestTimeout": StorageUnavailable,
    "500": StorageUnavailable,
    "502": StorageUnavailable,
    "503": StorageUnavailable,
    "504": StorageUnavailable,
    "NoSuchKey": StorageNotFound,
    "NotFound": StorageNotFound,
    "404": StorageNotFound,
}


def test_every_code_we_rely_on_is_pinned_and_in_one_set_only() -> None:
    sets = [AUTH_CODES, MISSING_BUCKET_CODES, CONFLICT_CODES, UNAVAILABLE_CODES, NOT_FOUND_CODES]
    every = [code for codes in sets for code in codes]
    assert len(every) == len(set(every)), "a code sits in two sets"
    assert set(every) == set(EXPECTED)
    assert not NOT_MODIFIED_CODES & set(every)


@pytest.mark.parametrize(("code", "expected"), sorted(EXPECTED.items()))
def test_every_client_error_code_maps(code: str, expected: type[StorageError]) -> None:
    status = int(code) if code.isdigit() else 400
    error = translate_s3_error(client_error(code, status), what="uploading x")
    assert type(error) is expected
    assert str(error).startswith("uploading x: ")


def test_exit_codes_are_the_documented_ones() -> None:
    assert StorageError.exit_code == StorageNotFound.exit_code == EXIT_IOERR
    assert StorageAuthError.exit_code == EXIT_NOPERM
    assert StorageUnavailable.exit_code == EXIT_UNAVAILABLE
    assert StorageConflict.exit_code == EXIT_CANTCREAT
    # The archive's names are the same classes: whatever catches them catches storage's errors.
    assert (ArchiveError, ArchiveAuthError, ArchiveUnavailable, ArchiveConflict) == (
        StorageError,
        StorageAuthError,
        StorageUnavailable,
        StorageConflict,
    )


@pytest.mark.parametrize(
    "code", ["BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "EntityTooSmall"]
)
def test_other_codes_are_plain_storage_errors(code: str) -> None:
    error = translate_s3_error(client_error(code), what="uploading x")
    assert type(error) is StorageError
    assert f"refused ({code}: message of {code})" in str(error)


def test_a_bare_404_is_a_missing_bucket_only_at_bucket_level() -> None:
    bucket_call = translate_s3_error(
        client_error("404", 404, "HeadBucket"), what="opening", bucket="b1", bucket_level=True
    )
    assert type(bucket_call) is StorageUnavailable
    assert "bucket b1 does not exist" in str(bucket_call)
    object_call = translate_s3_error(client_error("404", 404, "HeadObject"), what="reading", bucket="b1")
    assert type(object_call) is StorageNotFound
    named = translate_s3_error(client_error("NoSuchBucket", 404, "GetObject"), what="reading", bucket="b1")
    assert "bucket b1 does not exist" in str(named)


def test_error_code_falls_back_to_the_http_status() -> None:
    bare = botocore.exceptions.ClientError(
        {"ResponseMetadata": {"HTTPStatusCode": 503}},  # type: ignore[typeddict-item]
        "HeadObject",
    )
    assert error_code(bare) == "503"
    assert error_code(client_error("SlowDown", 503)) == "SlowDown"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), StorageUnavailable),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), StorageUnavailable),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), StorageUnavailable),
        (botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"), StorageUnavailable),
        (botocore.exceptions.NoCredentialsError(), StorageAuthError),
        (botocore.exceptions.PartialCredentialsError(provider="env", cred_var="secret"), StorageAuthError),
        (botocore.exceptions.ProfileNotFound(profile="p"), StorageAuthError),
        (botocore.exceptions.ParamValidationError(report="bad"), StorageError),
    ],
)
def test_botocore_errors_map(exc: Exception, expected: type[StorageError]) -> None:
    assert type(translate_s3_error(exc, what="x")) is expected


def test_the_context_manager_translates_and_chains() -> None:
    original = client_error("AccessDenied", 403)
    with (
        pytest.raises(StorageAuthError, match=r"^checking s3://b/k: access denied") as caught,
        map_s3_errors("checking s3://b/k"),
    ):
        raise original
    assert caught.value.__cause__ is original


def test_the_context_manager_signals_not_modified() -> None:
    for code in NOT_MODIFIED_CODES:
        with pytest.raises(NotModified), map_s3_errors("reading s3://b/k"):
            raise client_error(code, 304, "GetObject")


def test_the_context_manager_lets_other_errors_through() -> None:
    ours = StorageConflict("ours")
    with pytest.raises(StorageConflict) as caught, map_s3_errors("x"):
        raise ours
    assert caught.value is ours
    with pytest.raises(FileNotFoundError), map_s3_errors("x"):
        raise FileNotFoundError("local file")


def test_from_s3_tells_mapped_errors_from_local_ones() -> None:
    with pytest.raises(StorageAuthError) as mapped, map_s3_errors("reading s3://b/k"):
        raise client_error("AccessDenied", 403)
    assert from_s3(mapped.value)
    with pytest.raises(StorageAuthError) as local:
        raise translate_os_error(PermissionError(13, "Permission denied"), what="writing x") from OSError()
    assert not from_s3(local.value)
