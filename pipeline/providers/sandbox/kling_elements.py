"""The sandbox's Kling element API: elements created beforehand, referenced by id in ``element_list``.

``POST /v1/general/advanced-custom-elements`` takes ``element_name`` (1–20 characters),
``element_description`` (1–100), ``reference_type: image_refer`` (the sandbox makes no video
elements), ``element_image_list`` (a ``frontal_image`` and 1–3 ``refer_images`` of
``{"image_url": …}``: URLs or base64) and an optional ``tag_list``; it answers a task id.
``GET /v1/general/advanced-custom-elements/{task_id}`` reads the task: ``submitted`` until the
element is ready (a moment scaled by ``latency_scale``), then ``succeed`` with
``task_result.elements[0].element_id`` (an integer) and ``final_unit_deduction: "0"``: creating
an element is free, so nothing enters the ledger or the request log.

:meth:`ElementBook.resolve` reads a video request's ``element_list``: every id must name an
element created here and ready, at most 3, on image2video only, and not with ``voice_list``.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pipeline.providers.sandbox.images import ImageInput
from pipeline.providers.sandbox.intake import ImageStore, frame_of
from pipeline.providers.sandbox.render import Placeholder

ELEMENTS_PATH: Final = "/v1/general/advanced-custom-elements"
MAX_NAME: Final = 20
MAX_DESCRIPTION: Final = 100
MAX_REFER_IMAGES: Final = 3
#: Elements one image2video request may reference.
MAX_ELEMENT_LIST: Final = 3
#: Seconds an element takes to be ready, before ``latency_scale``.
READY_S: Final = 10.0

#: (status, code, message) → an error answer in Kling's shape.
ErrorAnswer = Callable[[int, int, str], JSONResponse]
OkAnswer = Callable[[dict[str, Any]], JSONResponse]


@dataclass
class SandboxElement:
    """One created element and what the render and the request log need of it."""

    element_id: int
    task_id: str
    name: str
    description: str
    images: tuple[ImageInput, ...]
    frames: tuple[Path | Placeholder, ...]
    #: Each image as a request's identity keeps it (a data URI by its digest, a URL as sent).
    identity: tuple[str, ...]
    created_at: float = field(default_factory=time.time)
    ready_at: float = 0.0

    @property
    def ready(self) -> bool:
        """True once the creation task has succeeded."""
        return time.monotonic() >= self.ready_at


def _text(body: dict[str, Any], name: str, most: int) -> tuple[str, str | None]:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > most:
        return "", f"{name}: 1 to {most} characters"
    return value, None


def image_values(body: object) -> tuple[list[str], str | None]:
    """The frontal image then the reference images of a create body, or the first problem."""
    if not isinstance(body, dict):
        return [], "the body must be a JSON object"
    if body.get("reference_type") != "image_refer":
        return [], "reference_type: the sandbox creates image_refer elements only"
    listing = body.get("element_image_list")
    frontal = listing.get("frontal_image") if isinstance(listing, dict) else None
    refers = listing.get("refer_images") if isinstance(listing, dict) else None
    if not isinstance(frontal, str) or not frontal:
        return [], "element_image_list.frontal_image: an image URL or base64 data is required"
    if not isinstance(refers, list) or not 1 <= len(refers) <= MAX_REFER_IMAGES:
        return [], f"element_image_list.refer_images: 1 to {MAX_REFER_IMAGES} images"
    urls = [r.get("image_url") if isinstance(r, dict) else None for r in refers]
    if not all(isinstance(u, str) and u for u in urls):
        return [], "element_image_list.refer_images[].image_url: an image URL or base64 data"
    return [frontal, *(str(u) for u in urls)], None


class ElementBook:
    """The elements created in this sandbox, by task id and by element id."""

    def __init__(self, *, latency_scale: float) -> None:
        self.latency_scale = latency_scale
        self.by_task: dict[str, SandboxElement] = {}
        self.by_id: dict[int, SandboxElement] = {}
        self._ids = itertools.count(860_000_000_000_000_001)

    def add(
        self,
        name: str,
        description: str,
        images: list[ImageInput],
        frames: list[Path | Placeholder],
        raw: list[str],
    ) -> SandboxElement:
        """Record a new element (ready after its creation time)."""
        identity = tuple(
            f"data:{i.mime};sha256,{i.sha256}" if i.kind == "data-uri" else r
            for i, r in zip(images, raw, strict=True)
        )
        element = SandboxElement(
            element_id=next(self._ids),
            task_id=str(uuid.uuid4()),
            name=name,
            description=description,
            images=tuple(images),
            frames=tuple(frames),
            identity=identity,
            ready_at=time.monotonic() + READY_S * self.latency_scale,
        )
        self.by_task[element.task_id] = element
        self.by_id[element.element_id] = element
        return element

    def resolve(self, kind: str, body: dict[str, Any]) -> tuple[list[SandboxElement], str | None]:
        """The elements a video request's ``element_list`` references, or the problem with it."""
        listing = body.get("element_list")
        if listing is None:
            return [], None
        if kind != "image2video":
            return [], "element_list: supported on image2video only"
        if body.get("voice_list"):
            return [], "element_list cannot be used together with voice_list"
        if not isinstance(listing, list) or not 1 <= len(listing) <= MAX_ELEMENT_LIST:
            return [], f"element_list: 1 to {MAX_ELEMENT_LIST} elements"
        found: list[SandboxElement] = []
        for k, item in enumerate(listing):
            some_id = item.get("element_id") if isinstance(item, dict) else None
            element = (
                self.by_id.get(some_id)
                if isinstance(some_id, int) and not isinstance(some_id, bool)
                else None
            )
            if element is None or not element.ready:
                return [], f"element_list[{k}].element_id: element {some_id} does not exist"
            found.append(element)
        return found, None


def task_data(element: SandboxElement) -> dict[str, Any]:
    """A creation task as the query answers it."""
    ready = element.ready
    data: dict[str, Any] = {
        "task_id": element.task_id,
        "task_status": "succeed" if ready else "submitted",
        "task_status_msg": "",
        "created_at": int(element.created_at * 1000),
        "updated_at": int(element.created_at * 1000),
        "final_unit_deduction": "0",
    }
    if ready:
        data["task_result"] = {
            "elements": [
                {
                    "element_id": element.element_id,
                    "element_name": element.name,
                    "element_description": element.description,
                    "element_type": "image_refer",
                    "status": "succeed",
                }
            ]
        }
    return data


def add_element_routes(
    router: APIRouter,
    book: ElementBook,
    *,
    store: ImageStore,
    realistic: bool,
    guard: Callable[[Request], JSONResponse | None],
    image_input: Callable[[str], ImageInput],
    error: ErrorAnswer,
    ok: OkAnswer,
) -> None:
    """Register the create and query routes of the element API on ``router``.

    ``guard`` answers a refusal (JWT, injected fault) or None; ``error``/``ok`` shape answers.
    """

    @router.post(ELEMENTS_PATH)
    async def create_element(request: Request) -> Response:
        if (refused := guard(request)) is not None:
            return refused
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        raw, problem = image_values(body)
        if problem or not isinstance(body, dict):
            return error(400, 1201, problem or "the body must be a JSON object")
        name, problem = _text(body, "element_name", MAX_NAME)
        description, other = _text(body, "element_description", MAX_DESCRIPTION)
        if problem or other:
            return error(400, 1201, str(problem or other))
        images = [image_input(value) for value in raw]
        frames: list[Path | Placeholder] = []
        for k, image in enumerate(images):
            frame = frame_of(image, realistic=realistic, store=store)
            if isinstance(frame, str) or frame is None:
                return error(400, 1201, f"element_image_list image {k}: {frame or 'unreadable'}")
            frames.append(frame)
        element = book.add(name, description, images, frames, raw)
        return ok(
            {"task_id": element.task_id, "task_status": "submitted", "created_at": int(time.time() * 1000)}
        )

    @router.get(ELEMENTS_PATH + "/{task_id}")
    async def query_element(task_id: str, request: Request) -> Response:
        if (refused := guard(request)) is not None:
            return refused
        element = book.by_task.get(task_id)
        if element is None:
            return error(404, 1203, f"task {task_id} does not exist")
        return ok(task_data(element))
