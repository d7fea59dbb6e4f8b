"""The S3 servers of the stack: moto and SeaweedFS on loopback, their endpoints and credentials."""

from __future__ import annotations

import botocore.exceptions
import pytest

from pipeline.stack.s3 import READER_KEY, READER_SECRET, S3Endpoint, start_moto

from ...conftest import S3Target, SeaweedServer


def test_an_endpoint_keeps_its_secret_out_of_its_repr() -> None:
    endpoint = S3Endpoint("x", "http://127.0.0.1:1", "b", "key", "very-secret")
    assert "very-secret" not in repr(endpoint)
    assert endpoint.env()["AWS_SECRET_ACCESS_KEY"] == "very-secret"
    assert endpoint.env()["KLINGFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:1"


def test_moto_serves_its_bucket_and_lists_keys() -> None:
    server = start_moto(bucket="stack-moto")
    try:
        target = server.target
        client = target.raw_client()
        client.put_object(Bucket="stack-moto", Key="a/1", Body=b"1")
        client.put_object(Bucket="stack-moto", Key="b/2", Body=b"2")
        assert target.keys("a/") == ["a/1"]
        assert sorted(target.keys()) == ["a/1", "b/2"]
    finally:
        server.stop()


@pytest.mark.slow
def test_seaweedfs_checks_credentials(seaweedfs_server: SeaweedServer) -> None:
    target: S3Target = seaweedfs_server.target
    target.raw_client().put_object(Bucket=target.bucket, Key="stack/x", Body=b"x")
    reader = target.session(access_key=READER_KEY, secret_key=READER_SECRET).client(
        "s3", endpoint_url=target.endpoint
    )
    assert reader.get_object(Bucket=target.bucket, Key="stack/x")["Body"].read() == b"x"
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        reader.put_object(Bucket=target.bucket, Key="stack/y", Body=b"y")
    with pytest.raises(botocore.exceptions.ClientError):
        target.raw_client().head_bucket(Bucket="no-such-bucket")  # not created on demand
