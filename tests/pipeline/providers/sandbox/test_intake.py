"""From a submit body to a validated input and frames: lenient and realistic image handling."""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.pricing import Tier
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.images import classify
from pipeline.providers.sandbox.intake import ImageStore, take
from pipeline.providers.sandbox.render import Placeholder

I2V = "image-to-video"
LENIENT = SandboxConfig()
REALISTIC = SandboxConfig(realistic=True, token=SecretStr("t"))


def png(width: int, height: int) -> bytes:
    """The start of a PNG: signature and IHDR, enough for the sandbox's checks."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x02\x00\x00\x00"
    )


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    (tmp_path / "images").mkdir()
    (tmp_path / "uploads").mkdir()
    return ImageStore(tmp_path / "images", tmp_path / "uploads")


def test_a_data_uri_becomes_a_stored_frame_and_sets_the_shape(store: ImageStore) -> None:
    image = png(90, 160)
    body = {"prompt": "a kite", "start_image_url": data_uri(image)}

    intake = take(LENIENT, store, Tier.PRO, I2V, body)

    assert intake.problems == [] and intake.inp is not None
    start, end = intake.frames
    assert isinstance(start, Path) and start.read_bytes() == image and end is None
    # The input names the image by content (a data URI can be megabytes), and a portrait
    # start image makes a portrait clip when the body named no aspect ratio.
    assert intake.inp.start_image_url == f"data:image/png;sha256,{hashlib.sha256(image).hexdigest()}"
    assert intake.inp.aspect_ratio == "9:16"
    assert intake.images["start_image_url"].kind == "data-uri"


def test_an_explicit_aspect_ratio_wins_over_the_images_shape(store: ImageStore) -> None:
    body = {"prompt": "p", "aspect_ratio": "1:1", "start_image_url": data_uri(png(90, 160))}

    intake = take(LENIENT, store, Tier.PRO, I2V, body)

    assert intake.inp is not None and intake.inp.aspect_ratio == "1:1"


def test_the_store_keeps_one_file_per_content(store: ImageStore) -> None:
    first = store.save(png(10, 10), "image/png")
    second = store.save(png(10, 10), "image/png")

    assert first == second and first.suffix == ".png"
    assert [p.name for p in store.images_dir.iterdir()] == [first.name]  # no partial file left


def test_lenient_mode_takes_a_sandbox_upload_but_not_a_remote_url(store: ImageStore) -> None:
    (store.uploads_dir / "abc.png").write_bytes(png(16, 9))
    upload = "http://127.0.0.1:9/cdn/uploads/abc.png"

    ok = take(LENIENT, store, Tier.STANDARD, I2V, {"prompt": "p", "image_url": upload})
    remote = take(LENIENT, store, Tier.STANDARD, I2V, {"prompt": "p", "image_url": "https://x.example/a.png"})

    assert ok.problems == [] and ok.frames[0] == store.uploads_dir / "abc.png"
    assert remote.inp is None
    # Reported under the canonical field name, whichever spelling the body used.
    assert [p["loc"] for p in remote.problems] == [["body", "start_image_url"]]


def test_an_upload_url_cannot_reach_outside_the_uploads_folder(store: ImageStore) -> None:
    (store.images_dir / "secret.png").write_bytes(png(4, 4))

    assert store.upload(classify("http://h/cdn/uploads/../images/secret.png")) is None
    assert store.upload(classify("http://h/cdn/uploads/missing.png")) is None
    assert store.upload(classify("http://h/cdn/uploads/")) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://x.example/a.png", "must use https://"),
        ("https://127.0.0.1:9/cdn/uploads/abc.png", "cannot fetch sandbox uploads"),
    ],
)
def test_realistic_mode_refuses_what_the_hosted_api_could_not_fetch(
    store: ImageStore, url: str, why: str
) -> None:
    intake = take(REALISTIC, store, Tier.PRO, I2V, {"prompt": "p", "start_image_url": url})

    assert intake.inp is None
    assert [p["loc"] for p in intake.problems] == [["body", "start_image_url"]]
    assert why in intake.problems[0]["msg"]


def test_realistic_mode_shows_a_remote_image_as_a_labelled_placeholder(store: ImageStore) -> None:
    body = {"prompt": "p", "start_image_url": "https://img.example/a.png"}

    intake = take(REALISTIC, store, Tier.PRO, I2V, body)

    assert intake.problems == []
    assert intake.frames == (Placeholder("remote image img.example"), None)


def test_realistic_mode_checks_the_strict_schema_first(store: ImageStore) -> None:
    body = {"prompt": "p", "image_url": "https://img.example/a.png", "aspect_ratio": "16:9"}

    intake = take(REALISTIC, store, Tier.PRO, I2V, body)

    assert intake.inp is None
    locs = [p["loc"] for p in intake.problems]
    assert ["body", "start_image_url"] in locs and ["body", "aspect_ratio"] in locs
    assert ["body", "image_url"] in locs  # the lenient spelling is an extra field here


def test_text_to_video_ignores_image_fields_for_frames(store: ImageStore) -> None:
    body = {"prompt": "p", "start_image_url": "https://img.example/a.png"}

    intake = take(LENIENT, store, Tier.STANDARD, "text-to-video", body)

    assert intake.problems == [] and intake.frames == (None, None)
    assert "start_image_url" in intake.images  # still logged


def test_a_broken_data_uri_is_a_problem_naming_why(store: ImageStore) -> None:
    body = {"prompt": "p", "start_image_url": "data:image/png;base64,!!!"}

    intake = take(LENIENT, store, Tier.STANDARD, I2V, body)

    assert intake.inp is None and "invalid base64" in intake.problems[0]["msg"]
