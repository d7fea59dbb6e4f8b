"""Kling elements sent natively: created once through the element API, then referenced by id.

Kling's video endpoints do not take element images: ``element_list`` takes ids of elements made
beforehand with ``POST /v1/general/advanced-custom-elements`` (a name ≤ 20 characters, a
description ≤ 100, ``reference_type: image_refer``, a frontal image and 1–3 other reference
images), an asynchronous task read at ``GET /v1/general/advanced-custom-elements/{task_id}``
until ``succeed``, whose ``task_result.elements[0].element_id`` is the id. ``element_list``
goes on image2video only, at most 3 entries, and not together with ``voice_list``; a prompt
names the n-th entry with a template (``<<<element_1>>>``, setting ``element_mention``).
Creating an element is free (the query answer's ``final_unit_deduction`` is ``"0"``): only the
video that uses it is billed. Sources: ``tests/pipeline/providers/test_kling_contract.py``.

Which elements of a request go natively (:func:`native_elements`): on image2video, those with
images, in the request's order, up to ``max_elements``; an element with a single image repeats
it as its reference image (``single_image_elements: repeat``) or goes in words
(``describe``). Every other element's mention becomes its name, described at its first mention.

:class:`ElementMaker` creates each element once per adapter, keyed by the content of its images
and its description, under one lock per key so that concurrent submits create it once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pipeline.errors import BadRequest, UpstreamError
from pipeline.generation import ElementRef, GenerationSpec, replace_mentions

ELEMENTS_PATH: Final = "/v1/general/advanced-custom-elements"
MAX_NAME_CHARS: Final = 20
MAX_DESCRIPTION_CHARS: Final = 100
#: Reference images besides the frontal one.
MAX_REFER_IMAGES: Final = 3
REFERENCE_TYPE: Final = "image_refer"

#: An element's id as the API gives it (an int64 in the answers we read; a string is kept as is).
ElementId = int | str


def image_digest(url: str) -> str:
    """What identifies an image's content: a data URI by its payload, a URL without its query
    (a presigned URL's signature changes, its path does not)."""
    if url.startswith("data:"):
        return hashlib.sha256(url.partition(",")[2].encode()).hexdigest()
    return hashlib.sha256(url.partition("?")[0].encode()).hexdigest()


def element_key(element: ElementRef) -> str:
    """The content key of an element: sha256 of its images' digests and its description."""
    digest = hashlib.sha256(element.description.strip().encode())
    for url in element.image_urls:
        digest.update(b"\0" + image_digest(url).encode())
    return digest.hexdigest()


def native_elements(
    spec: GenerationSpec, *, max_elements: int, single_image: str = "repeat"
) -> tuple[ElementRef, ...]:
    """The elements of ``spec`` sent by id (see the module docstring), in ``element_list`` order."""
    if not spec.start_image_url:
        return ()
    sendable = [
        e for e in spec.elements if e.image_urls and (len(e.image_urls) >= 2 or single_image == "repeat")
    ]
    return tuple(sendable[:max_elements])


def mention_rewriter(
    spec: GenerationSpec, natives: tuple[ElementRef, ...], template: str
) -> Callable[[str], str]:
    """Rewrites a prompt's ``@name`` mentions: an element sent by id as ``template`` with its place
    in ``element_list``; any other element as its name. In a storyboard it is also described at its
    first mention in the request (the planner left storyboard mentions of elements it meant to
    send natively bare; the prose prompt has every description inlined already)."""
    place = {e.name: n for n, e in enumerate(natives, start=1)}
    descriptions = (
        {e.name: e.description.strip() for e in spec.elements if e.name not in place} if spec.shots else {}
    )
    described: set[str] = set()

    def name_for(name: str) -> str:
        if name in place:
            return template.replace("{n}", str(place[name]))
        description = descriptions.get(name)
        if description and name not in described:
            described.add(name)
            return f"{name} ({description})"
        return name

    return lambda text: replace_mentions(text, name_for)


def creation_body(element: ElementRef, *, tag: str, image_value: Callable[[str], str]) -> dict[str, Any]:
    """The create-element body of ``element`` (a single image is repeated as its reference)."""
    images = [image_value(u) for u in element.image_urls]
    refers = images[1 : 1 + MAX_REFER_IMAGES] or images[:1]
    description = element.description.strip() or element.name
    return {
        "element_name": element.name[:MAX_NAME_CHARS],
        "element_description": description[:MAX_DESCRIPTION_CHARS],
        "reference_type": REFERENCE_TYPE,
        "element_image_list": {
            "frontal_image": images[0],
            "refer_images": [{"image_url": u} for u in refers],
        },
        "tag_list": [{"tag_id": tag}],
    }


@dataclass(frozen=True)
class ElementTask:
    """One element-creation task as an answer describes it."""

    task_id: str
    status: str
    element_id: ElementId | None = None
    message: str | None = None


def element_task_of(data: object, operation: str) -> ElementTask:
    """The task in an answer's ``data``; UpstreamError when it has not the documented shape."""
    if not isinstance(data, dict) or not isinstance(data.get("task_id"), str) or not data["task_id"]:
        raise UpstreamError(f"{operation}: the answer has no data.task_id")
    result = data.get("task_result")
    elements = result.get("elements") if isinstance(result, dict) else None
    first = elements[0] if isinstance(elements, list) and elements and isinstance(elements[0], dict) else {}
    raw_id = first.get("element_id")
    element_id = raw_id if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else None
    status = data.get("task_status")
    message = data.get("task_status_msg")
    return ElementTask(
        task_id=data["task_id"],
        status=status if isinstance(status, str) else "",
        element_id=element_id if element_id != "" else None,
        message=message if isinstance(message, str) and message else None,
    )


#: One API call: (method, path, operation, json) → the answer's ``data`` (errors raised).
ApiCall = Callable[[str, str, str, Mapping[str, Any] | None], Awaitable[object]]


class ElementMaker:
    """Creates each element once per adapter (content-keyed; concurrent submits share one creation).

    ``call`` makes one retried API call; ``poll_s`` and ``timeout_s`` pace the wait for the
    creation task. Creation is free, so a create whose answer was lost is simply made again.
    """

    def __init__(
        self, call: ApiCall, *, tag: str, image_value: Callable[[str], str], poll_s: float, timeout_s: float
    ) -> None:
        self._call = call
        self._tag = tag
        self._image_value = image_value
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._ids: dict[str, ElementId] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Elements created by this adapter (not found in its cache).
        self.created = 0

    def known(self, element: ElementRef) -> ElementId | None:
        """The id of ``element`` when this adapter has created it already."""
        return self._ids.get(element_key(element))

    async def ids(self, elements: tuple[ElementRef, ...]) -> dict[str, ElementId]:
        """The id of each element by name, creating those not made yet."""
        out: dict[str, ElementId] = {}
        for element in elements:
            key = element_key(element)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if key not in self._ids:
                    self._ids[key] = await self._create(element)
                    self.created += 1
            out[element.name] = self._ids[key]
        return out

    async def _create(self, element: ElementRef) -> ElementId:
        operation = f"create element {element.name}"
        body = creation_body(element, tag=self._tag, image_value=self._image_value)
        task = element_task_of(await self._call("POST", ELEMENTS_PATH, operation, body), operation)
        deadline = time.monotonic() + self._timeout_s
        while True:
            if task.status == "succeed":
                if task.element_id is None:
                    raise UpstreamError(f"{operation}: the task succeeded without an element_id")
                return task.element_id
            if task.status == "failed":
                raise BadRequest(
                    f"{operation}: Kling refused to create it ({task.message or 'no reason given'}); "
                    "check the element's images"
                )
            if time.monotonic() >= deadline:
                raise UpstreamError(
                    f"{operation}: not ready after {self._timeout_s:g} s (task {task.task_id})"
                )
            await asyncio.sleep(self._poll_s)
            path = f"{ELEMENTS_PATH}/{task.task_id}"
            task = element_task_of(
                await self._call("GET", path, f"query element task {task.task_id}", None), operation
            )
