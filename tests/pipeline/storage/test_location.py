"""pipeline.storage.location: s3://bucket/prefix or a directory, and key building."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.storage.location import LocalLocation, S3Location, join_key, key_segment, parse_location


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://my-bucket/campaigns/", S3Location("my-bucket", "campaigns")),
        ("s3://my-bucket", S3Location("my-bucket", "")),
        ("s3://my-bucket/", S3Location("my-bucket", "")),
        ("S3://my.bucket.01//a//b/", S3Location("my.bucket.01", "a/b")),
        ("renders", LocalLocation(Path("renders"))),
        (" /srv/shared ", LocalLocation(Path("/srv/shared"))),
        (Path("x/y"), LocalLocation(Path("x/y"))),
    ],
)
def test_parse(text: str | Path, expected: object) -> None:
    assert parse_location(text) == expected


@pytest.mark.parametrize(
    "text",
    ["s3://", "s3://Upper", "s3://ab", "s3://bucket_underscore/x", "s3://1.2.3.4/x", "s3://b-b/a/../c",
     "gs://bucket/x", "https://example.com/x", "", "  "],
)  # fmt: skip
def test_rejected_naming_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^KLINGFLOW_SHARED_URL"):
        parse_location(text, what="KLINGFLOW_SHARED_URL")


def test_same_layout_in_both_kinds() -> None:
    parts = ("summer-launch", "r1", "atlantic", "a", "final", "master.mp4")
    assert (
        S3Location("b", "campaigns").key(*parts) == "campaigns/summer-launch/r1/atlantic/a/final/master.mp4"
    )
    assert S3Location("b").key(*parts) == LocalLocation(Path("d")).key(*parts)
    assert S3Location("b", "p").uri("p/k") == "s3://b/p/k"
    assert str(S3Location("b", "p")) == "s3://b/p"
    assert str(S3Location("b")) == "s3://b"
    assert LocalLocation(Path("d")).uri("k/x") == "d/k/x"


def test_join_key_skips_empty_parts() -> None:
    assert join_key("", "/a/", "b") == "a/b"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\nb", "a\x7fb"])
def test_key_segment_refuses(bad: str) -> None:
    with pytest.raises(ConfigError, match="run id"):
        key_segment(bad, "run id")


def test_key_segment_accepts_one_segment() -> None:
    assert key_segment("summer-launch.v2", "script name") == "summer-launch.v2"
