"""From a submit's JSON body to a validated input and the frames to render, or 422 problems.

Realistic mode (``SandboxConfig.realistic``) checks the body against the model's strict JSON
Schema first, and takes image fields only as ``data:`` URIs (decoded, shown as the frame) or
``https://`` URLs (not fetched: the sandbox is offline, so a labelled placeholder is shown).
``http://`` URLs and the sandbox's own upload URLs are refused, as the hosted API could not use
them. The lenient mode keeps the sandbox convenient: extra fields ignored, both spellings of the
image fields, sandbox uploads and data URIs accepted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.pricing import Tier
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.images import (
    EXTENSIONS,
    UPLOAD_PATH,
    ImageInput,
    classify,
    closest_aspect,
    dimensions,
)
from pipeline.providers.sandbox.inputs import END_IMAGE_FIELDS, START_IMAGE_FIELDS, KlingInput, validate_input
from pipeline.providers.sandbox.render import Placeholder
from pipeline.providers.sandbox.schema import input_schema, schema_problems
from pipeline.providers.sandbox.state import Frame


@dataclass
class Intake:
    """What a submit carried: its images (for the log) and, when valid, the input and frames."""

    images: dict[str, ImageInput] = field(default_factory=dict)
    inp: KlingInput | None = None
    frames: tuple[Frame, Frame] = (None, None)
    problems: list[dict[str, Any]] = field(default_factory=list)


def _problem(name: str, msg: str) -> dict[str, Any]:
    return {"loc": ["body", name], "msg": msg, "type": "value_error"}


def classify_images(body: object) -> dict[str, ImageInput]:
    """Every image field of ``body`` that holds a string, classified."""
    if not isinstance(body, dict):
        return {}
    return {
        name: classify(body[name])
        for name in (*START_IMAGE_FIELDS, *END_IMAGE_FIELDS)
        if isinstance(body.get(name), str) and body[name]
    }


class ImageStore:
    """Where decoded data-URI images and uploads live."""

    def __init__(self, images_dir: Path, uploads_dir: Path) -> None:
        self.images_dir = images_dir
        self.uploads_dir = uploads_dir

    def save(self, data: bytes, mime: str | None) -> Path:
        """Write a decoded data-URI image (by content, once) and return its file."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.images_dir / f"{digest[:24]}.{EXTENSIONS.get(mime or '', 'jpg')}"
        if not path.exists():
            partial = path.with_name(f".{path.name}.part")
            partial.write_bytes(data)
            partial.replace(path)
        return path

    def upload(self, image: ImageInput) -> Path | None:
        """The uploaded file an ``upload`` URL names, or None."""
        name = (image.url_path or "")[len(UPLOAD_PATH) :]
        candidate = self.uploads_dir / name
        return candidate if name and "/" not in name and candidate.is_file() else None


def frame_of(image: ImageInput, *, realistic: bool, store: ImageStore) -> Frame | str:
    """The frame ``image`` gives, or why it is refused."""
    if image.kind == "data-uri":
        if image.problem or image.data is None:
            return image.problem or "the data URI could not be decoded"
        return store.save(image.data, image.mime)
    if realistic:
        if image.kind == "https":
            return Placeholder(f"remote image {image.host}")
        if image.kind == "upload":
            return "the hosted API cannot fetch sandbox uploads: send an https:// URL or a data: URI"
        if image.kind == "http":
            return "image URLs must use https://"
        return image.problem or "expected an https:// URL or a data: URI"
    if image.kind == "upload":
        found = store.upload(image)
        if found is not None:
            return found
    return "the sandbox only fetches images uploaded to it (POST /v1/sandbox/uploads) or data: URIs"


def take(
    config: SandboxConfig,
    store: ImageStore,
    tier: Tier,
    mode: str,
    body: object,
    images: dict[str, ImageInput] | None = None,
) -> Intake:
    """Validate ``body`` for ``tier``/``mode`` and resolve its images (see the module docstring);
    ``images`` is :func:`classify_images` of ``body`` when the caller already has it."""
    intake = Intake(images=classify_images(body) if images is None else images)
    if config.realistic:
        intake.problems = schema_problems(input_schema(mode, strict=True), body)
        if intake.problems:
            return intake
    inp, problems = validate_input(tier, mode, body)
    intake.problems = problems
    if inp is None:
        return intake
    frames: list[Frame] = []
    shown: list[ImageInput | None] = []
    for names in (START_IMAGE_FIELDS, END_IMAGE_FIELDS):
        name = next((n for n in names if n in intake.images), None)
        if name is None or mode != "image-to-video":
            frames.append(None)
            shown.append(None)
            continue
        found = frame_of(intake.images[name], realistic=config.realistic, store=store)
        if isinstance(found, str):
            intake.problems.append(_problem(names[0], found))  # the canonical spelling, as before
        frames.append(None if isinstance(found, str) else found)
        shown.append(intake.images[name])
    if intake.problems:
        return intake
    intake.frames = (frames[0], frames[1])
    intake.inp = _by_content(inp, shown, body)
    return intake


def _by_content(inp: KlingInput, shown: list[ImageInput | None], body: object) -> KlingInput:
    """``inp`` with data URIs replaced by their digest, and the shape taken from the start image
    when the body named none (image-to-video: the picture's shape is the image's)."""
    changes: dict[str, Any] = {}
    for key, image in zip(("start_image_url", "end_image_url"), shown, strict=True):
        if image is not None and image.kind == "data-uri":
            changes[key] = f"data:{image.mime};sha256,{image.sha256}"
    start = shown[0]
    if isinstance(body, dict) and "aspect_ratio" not in body and start is not None and start.data:
        size = dimensions(start.data)
        if size is not None:
            changes["aspect_ratio"] = closest_aspect(*size)
    return dataclasses.replace(inp, **changes) if changes else inp
