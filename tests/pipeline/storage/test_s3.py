"""pipeline.storage.s3: verified, conditional, never-overwriting writes to SeaweedFS and moto.

``S3Target.archive()`` (the fixtures' name) hands out an :class:`S3Store` under a fresh prefix.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import (
    EXIT_CANTCREAT,
    EXIT_UNAVAILABLE,
    StorageAuthError,
    StorageConflict,
    StorageError,
    StorageUnavailable,
)
from pipeline.hashing import sha256_file
from pipeline.stack.s3 import READER_KEY, READER_SECRET
from pipeline.storage.base import Outcome
from pipeline.storage.location import S3Location
from pipeline.storage.s3 import S3Store, content_md5
from pipeline.storage.s3client import make_s3_client
from pipeline.storage.settings import MIB

from ...conftest import S3Target
from .conftest import count_calls, write_file_of

# --- both servers ---------------------------------------------------------------------------


def test_get_read_back_and_absent_keys(tmp_path: Path, s3_target: S3Target) -> None:
    store = s3_target.archive()
    path = write_file_of(tmp_path / "a.bin", 3000)
    sha256 = sha256_file(path)
    key = store.location.key("a.bin")
    assert store.read_back(key) is None
    assert store.get(key, tmp_path / "out" / "a.bin", sha256) is False

    assert store.put(key, path, sha256).outcome is Outcome.UPLOADED
    assert store.put(key, path, sha256).outcome is Outcome.PRESENT

    assert store.read_back(key) == (3000, sha256)
    assert store.get(key, tmp_path / "out" / "a.bin", sha256) is True
    assert (tmp_path / "out" / "a.bin").read_bytes() == path.read_bytes()
    with pytest.raises(StorageError, match="source changed"):
        store.get(key, tmp_path / "out" / "b.bin", "0" * 64)
    assert not (tmp_path / "out" / "b.bin").exists()


def test_fetch_is_one_conditional_get(tmp_path: Path, s3_target: S3Target) -> None:
    store = s3_target.archive()
    key = store.location.key("s.yaml")
    raw = s3_target.raw_client()
    raw.put_object(Bucket=s3_target.bucket, Key=key, Body=b"version: 1\n")
    dest = tmp_path / "copy" / "s.yaml"
    calls = count_calls(store, "GetObject")

    first = store.fetch(key, dest)
    assert first is not None and first.changed and first.etag
    assert first.sha256 == hashlib.sha256(b"version: 1\n").hexdigest()
    assert dest.read_bytes() == b"version: 1\n"

    again = store.fetch(key, dest, etag=first.etag)
    assert again is not None and not again.changed
    assert calls["GetObject"] == 2

    raw.put_object(Bucket=s3_target.bucket, Key=key, Body=b"version: 2\n")
    changed = store.fetch(key, dest, etag=first.etag)
    assert changed is not None and changed.changed and changed.etag != first.etag
    assert dest.read_bytes() == b"version: 2\n"

    assert store.fetch(store.location.key("missing.yaml"), tmp_path / "m.yaml") is None
    assert not (tmp_path / "m.yaml").exists()


def test_check_names_a_missing_bucket(s3_target: S3Target) -> None:
    store = S3Store(s3_target.client(), S3Location("no-such-bucket-here"), s3_target.settings())
    with pytest.raises(StorageUnavailable, match="bucket no-such-bucket-here does not exist") as caught:
        store.check()
    assert caught.value.exit_code == EXIT_UNAVAILABLE
    with pytest.raises(StorageUnavailable, match="no-such-bucket-here does not exist"):
        store.fetch("x.yaml", Path("unused"))


def test_s3_changed_file_under_same_key_is_refused(tmp_path: Path, s3_target: S3Target) -> None:
    store = s3_target.archive()
    first = write_file_of(tmp_path / "a.bin", 1000, b"a")
    second = write_file_of(tmp_path / "b.bin", 1000, b"b")
    key = store.location.key("clip.bin")
    store.put(key, first, sha256_file(first))

    with pytest.raises(StorageConflict, match="refusing to overwrite") as caught:
        store.put(key, second, sha256_file(second))

    assert caught.value.exit_code == EXIT_CANTCREAT
    assert store.read_back(key) == (1000, sha256_file(first))


def test_s3_conditional_write_loses_a_race_without_overwriting(tmp_path: Path, s3_target: S3Target) -> None:
    store = s3_target.archive()
    ours = write_file_of(tmp_path / "ours.bin", 2000, b"o")
    theirs = b"written by someone else between our HEAD and our PUT"
    raw = s3_target.raw_client()
    key = store.location.key("race.bin")

    def sneak_in(**_: Any) -> None:
        raw.put_object(Bucket=s3_target.bucket, Key=key, Body=theirs)

    store.client.meta.events.register_first("before-call.s3.PutObject", sneak_in)

    with pytest.raises(StorageConflict):
        store.put(key, ours, sha256_file(ours))

    assert raw.get_object(Bucket=s3_target.bucket, Key=key)["Body"].read() == theirs


def test_s3_multipart_small_parts(tmp_path: Path, s3_target: S3Target) -> None:
    store = s3_target.archive(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    path = write_file_of(tmp_path / "m.bin", 12 * MIB)
    calls = count_calls(store, "UploadPart", "PutObject")

    result = store.put(store.location.key("m.bin"), path, sha256_file(path))

    assert result.outcome is Outcome.UPLOADED
    assert calls["UploadPart"] == 3
    assert calls["PutObject"] == 0
    head = s3_target.raw_client().head_object(Bucket=s3_target.bucket, Key=result.key)
    assert head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["sha256"] == sha256_file(path)


# --- SeaweedFS only (credentials and digests checked) -----------------------------------


def test_read_only_credentials_cannot_write(tmp_path: Path, seaweedfs: S3Target) -> None:
    session = seaweedfs.session(access_key=READER_KEY, secret_key=READER_SECRET)
    store = S3Store(
        make_s3_client(seaweedfs.settings(), session=session),
        S3Location(seaweedfs.bucket, "ro"),
        seaweedfs.settings(),
    )
    path = write_file_of(tmp_path / "a.bin", 100)

    with pytest.raises(StorageAuthError):
        store.put(store.location.key("a.bin"), path, sha256_file(path))


def test_200_mb_upload_goes_multipart(tmp_path: Path, seaweedfs: S3Target) -> None:
    store = seaweedfs.archive()  # default settings: 64 MiB threshold, 16 MiB parts
    path = write_file_of(tmp_path / "big.mp4", 200 * 1000 * 1000)
    sha256 = sha256_file(path)
    calls = count_calls(store, "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "PutObject")

    result = store.put(store.location.key("big.mp4"), path, sha256)

    assert result.outcome is Outcome.UPLOADED
    assert (calls["CreateMultipartUpload"], calls["UploadPart"], calls["CompleteMultipartUpload"]) == (
        1,
        12,
        1,
    )
    assert calls["PutObject"] == 0
    head = seaweedfs.raw_client().head_object(Bucket=seaweedfs.bucket, Key=result.key)
    assert head["ETag"].strip('"').endswith("-12")  # a multipart ETag, not an MD5
    assert head["ContentLength"] == 200 * 1000 * 1000
    assert head["Metadata"]["sha256"] == sha256


def test_corrupted_part_is_refused_by_the_store(tmp_path: Path, seaweedfs: S3Target) -> None:
    store = seaweedfs.archive(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    path = write_file_of(tmp_path / "m.bin", 11 * MIB)

    def corrupt_part_two(params: dict[str, Any], **_: Any) -> None:
        # Flip a byte after Content-MD5 was computed from the good data: corruption in transit.
        if params["url"].find("partNumber=2") != -1:
            sent = params["body"]
            body = bytearray(sent.read() if hasattr(sent, "read") else sent)
            body[1234] ^= 0xFF
            params["body"] = bytes(body)

    store.client.meta.events.register("before-call.s3.UploadPart", corrupt_part_two)

    with pytest.raises(StorageError, match="BadDigest"):
        store.put(store.location.key("m.bin"), path, sha256_file(path))

    raw = seaweedfs.raw_client()
    assert "Contents" not in raw.list_objects_v2(Bucket=seaweedfs.bucket, Prefix=store.location.key("m.bin"))
    uploads = raw.list_multipart_uploads(Bucket=seaweedfs.bucket, Prefix=store.location.prefix)
    assert not uploads.get("Uploads")  # the multipart upload was aborted


def test_store_rejects_a_part_whose_md5_does_not_match(seaweedfs: S3Target) -> None:
    raw = seaweedfs.raw_client()
    key = "digest/x.bin"
    upload_id = raw.create_multipart_upload(Bucket=seaweedfs.bucket, Key=key)["UploadId"]
    try:
        with pytest.raises(raw.exceptions.ClientError, match="BadDigest"):
            raw.upload_part(
                Bucket=seaweedfs.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=1,
                Body=b"the body as sent",
                ContentMD5=content_md5(b"the body as meant"),
            )
    finally:
        raw.abort_multipart_upload(Bucket=seaweedfs.bucket, Key=key, UploadId=upload_id)


def test_readback_refuses_an_object_that_does_not_match(tmp_path: Path, seaweedfs: S3Target) -> None:
    store = seaweedfs.archive()
    path = write_file_of(tmp_path / "master.mp4", 3000)
    sha256 = sha256_file(path)

    def rewrite_master(**_: Any) -> None:
        # Someone rewrites the file after it was hashed and before it is read for upload (the
        # store's existence check comes in between): the transport checks pass, since they
        # cover what was sent; only reading back catches it.
        write_file_of(path, 3000, b"z")

    store.client.meta.events.register("before-call.s3.HeadObject", rewrite_master)
    key = store.location.key("master.mp4")

    with pytest.raises(StorageError, match="verification failed"):
        store.put(key, path, sha256)

    assert store.read_back(key) is None  # the unverified object was removed
    assert path.exists()


def test_corrupt_archived_object_is_not_taken_for_a_good_copy(tmp_path: Path, seaweedfs: S3Target) -> None:
    store = seaweedfs.archive()
    path = write_file_of(tmp_path / "master.mp4", 3000)
    sha256 = sha256_file(path)
    key = store.location.key("master.mp4")
    # Same size and the right sha256 in metadata, wrong bytes: bit rot, or a bad tool.
    seaweedfs.raw_client().put_object(
        Bucket=seaweedfs.bucket, Key=key, Body=b"x" * 3000, Metadata={"sha256": sha256}
    )

    with pytest.raises(StorageError, match="corrupt"):
        store.put(key, path, sha256)
