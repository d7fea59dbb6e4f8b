"""pipeline.archive.staging: images staged once, handed out as presigned GET URLs."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pipeline.archive.location import S3Location
from pipeline.archive.staging import MAX_EXPIRY, ImageStager, S3ImageStager, url_expiry
from pipeline.errors import ConfigError, InputNotFound
from pipeline.hashing import sha256_file

from .conftest import S3Target


def fetch(url: str) -> bytes:
    reply = httpx.get(url, timeout=10)
    reply.raise_for_status()
    return reply.content


@pytest.mark.parametrize(
    ("expected", "expiry"),
    [
        (timedelta(minutes=10), timedelta(minutes=70)),
        (timedelta(hours=5), timedelta(hours=10)),
        (timedelta(days=5), MAX_EXPIRY),
        (timedelta(0), timedelta(hours=1)),
    ],
)
def test_url_outlives_the_generation(expected: timedelta, expiry: timedelta) -> None:
    assert url_expiry(expected) == expiry
    assert url_expiry(expected) >= min(expected, MAX_EXPIRY)


def test_negative_expected_time() -> None:
    with pytest.raises(ConfigError):
        url_expiry(timedelta(seconds=-1))


def test_stage_uploads_once_and_presigns(s3_target: S3Target, media: dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "Deck.PNG"
    image.write_bytes(media["png"].read_bytes())
    archive = s3_target.archive()
    stager = S3ImageStager(archive, expected_generation=timedelta(minutes=20))
    puts: Counter[str] = Counter()
    archive.client.meta.events.register("before-send.s3.PutObject", lambda **_: puts.update(["put"]))

    url = stager.stage(image)
    again = stager.stage(image)

    assert isinstance(stager, ImageStager)
    assert puts["put"] == 1
    parts = urlsplit(url)
    assert parts.path.endswith(f"/{archive.location.prefix}/_staging/{sha256_file(image)}.png")
    assert parse_qs(parts.query)["X-Amz-Expires"] == [str(80 * 60)]
    assert fetch(url) == image.read_bytes()
    assert fetch(again) == image.read_bytes()


def test_a_tampered_url_is_refused(seaweedfs: S3Target, media: dict[str, Path]) -> None:
    stager = S3ImageStager(seaweedfs.archive())
    url = stager.stage(media["png"])
    forged = url.replace("X-Amz-Expires=", "X-Amz-Expires=9")  # a longer life, same signature
    assert httpx.get(forged, timeout=10).status_code == 403
    assert httpx.get(url, timeout=10).status_code == 200


def test_for_location_uses_the_factory(
    monkeypatch: pytest.MonkeyPatch, moto_s3: S3Target, media: dict[str, Path]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
    monkeypatch.setenv("KLINGFLOW_S3_ENDPOINT_URL", moto_s3.endpoint)
    stager = S3ImageStager.for_location(S3Location(moto_s3.bucket, "stage-test"))

    assert fetch(stager.stage(media["png"])) == media["png"].read_bytes()
    assert stager.expires_in == 90 * 60


def test_missing_image(moto_s3: S3Target, tmp_path: Path) -> None:
    stager = S3ImageStager(moto_s3.archive())
    with pytest.raises(InputNotFound):
        stager.stage(tmp_path / "missing.png")
