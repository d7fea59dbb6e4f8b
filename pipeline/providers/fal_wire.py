"""fal.ai's wire format for Kling 3.0: the request body, the queue's answers, its error bodies.

Shared by the adapter (:mod:`pipeline.providers.fal`) and the sandbox's fal dialect, so the two
cannot drift apart. Sources (each pinned by ``tests/pipeline/providers/test_fal_contract.py``):

- the model pages ``fal.ai/models/fal-ai/kling-video/v3/{standard,pro}/{text-to-video,
  image-to-video}`` (``llms.txt``): ``prompt`` *or* ``multi_prompt`` (not both), ``duration`` a
  string enum, ``generate_audio``, ``shot_type: customize``, ``elements`` referenced in the prompt
  as ``@Element1``…, ``start_image_url``/``end_image_url``, the output ``{"video": {"url"}}``;
- fal's Python client ``fal-ai/fal`` ``projects/fal_client/src/fal_client/client.py``: the queue
  paths (submit ``POST {queue}/{app}``; ``{queue}/{owner}/{alias}/requests/{id}`` for the result,
  ``…/status`` and ``PUT …/cancel``), ``Authorization: Key …``, the status words and the error
  body's ``detail``;
- fal's queue docs (``docs.fal.ai/documentation/model-apis/inference/queue``, ``…/queue/cancel``):
  cancel answers ``CANCELLATION_REQUESTED`` / ``ALREADY_COMPLETED`` / ``NOT_FOUND``;
- ``fal-ai/fal`` issues #1147, #1162: an account out of money answers 403
  ``{"detail": "User is locked. Reason: Exhausted balance. …"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict

from pipeline.errors import (
    AuthError,
    BadRequest,
    NoBalance,
    ProviderError,
    RateLimited,
    TransportError,
    UpstreamError,
)
from pipeline.generation import ElementRef, GenerationSpec, replace_mentions
from pipeline.providers.fal_settings import FalSettings
from pipeline.providers.retry import parse_retry_after

#: Status words (``fal_client`` ``_parse_status``).
IN_QUEUE: Final = "IN_QUEUE"
IN_PROGRESS: Final = "IN_PROGRESS"
COMPLETED: Final = "COMPLETED"
#: Cancel answers (fal's queue docs).
CANCELLATION_REQUESTED: Final = "CANCELLATION_REQUESTED"
ALREADY_COMPLETED: Final = "ALREADY_COMPLETED"
#: Aspect ratios the Kling 3.0 pages list.
ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1")
#: Words of an account that cannot pay (fal issues #1147, #1162).
_NO_BALANCE_WORDS: Final = ("exhausted balance", "insufficient balance", "top up", "top_up")
MAX_QUOTED_CHARS: Final = 300


def app_id(settings: FalSettings, spec: GenerationSpec) -> str:
    """The fal app of ``spec``: ``fal-ai/kling-video/v3/{tier}/{mode}``."""
    return f"{settings.app_prefix}/{spec.tier.value}/{spec.mode}"


def requests_base(settings: FalSettings, app: str) -> str:
    """``{queue}/{owner}/{alias}/requests``: fal keeps a request under the app's first two parts
    (``fal_client`` ``AsyncRequestHandle.from_request_id``), not under the endpoint path."""
    owner, alias = app.split("/")[:2]
    return f"{settings.queue_url}/{owner}/{alias}/requests"


def element_token(index: int) -> str:
    """How a prompt names the ``index``-th element (from 1): ``@Element1`` (fal's pages)."""
    return f"@Element{index}"


def _mention_names(
    elements: tuple[ElementRef, ...], settings: FalSettings, voice_of: Callable[[ElementRef], str | None]
) -> tuple[dict[str, str], list[dict[str, Any]], list[str]]:
    """Each element's replacement text, the ``elements`` field, and the voice list."""
    names: dict[str, str] = {}
    items: list[dict[str, Any]] = []
    voices: list[str] = []
    for element in elements:
        text = element.description or element.name
        if element.image_urls:
            item: dict[str, Any] = {"frontal_image_url": element.image_urls[0]}
            if len(element.image_urls) > 1:
                item["reference_image_urls"] = list(element.image_urls[1:])
            items.append(item)
            text = element_token(len(items))
        voice = voice_of(element) if settings.voices else None
        if voice is not None:
            voices.append(voice)
            text = f"{text} {settings.voice_token.format(n=len(voices))}"
        names[element.name] = text
    return names, items, voices


def build_body(spec: GenerationSpec, settings: FalSettings) -> dict[str, Any]:
    """The exact JSON submitted for ``spec`` (pure).

    A storyboard goes as ``multi_prompt`` (each shot's prompt and seconds) with ``shot_type:
    customize`` and no ``prompt``; ``@name`` mentions become ``@ElementN`` for elements with
    images (their description otherwise), followed by the element's voice token when it has a
    voice. A voice not yet created on fal shows as its source (the plan's view); the adapter
    creates it before submitting.
    """
    names, items, voices = _mention_names(spec.elements, settings, lambda e: e.voice_id or e.voice)

    def rewrite(text: str) -> str:
        return replace_mentions(text, lambda name: names.get(name, f"@{name}"))

    body: dict[str, Any] = {"duration": str(spec.duration), "generate_audio": spec.generate_audio}
    if spec.shots:
        body["multi_prompt"] = [
            {
                "prompt": rewrite(shot.prompt),
                "duration": str(shot.duration) if settings.shot_duration_as_string else shot.duration,
            }
            for shot in spec.shots
        ]
        body["shot_type"] = "customize"
    else:
        body["prompt"] = rewrite(spec.prompt)
    if spec.start_image_url:
        body["start_image_url"] = spec.start_image_url
        if spec.end_image_url:
            body["end_image_url"] = spec.end_image_url
    else:
        # Image-to-video takes the picture's shape from its start image.
        body["aspect_ratio"] = spec.aspect_ratio
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    body["cfg_scale"] = spec.cfg_scale
    if items:
        body["elements"] = items
    if voices:
        body[settings.voice_ids_field] = voices
    return body


# --- answers -------------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class QueueSubmitAnswer(_Wire):
    """``POST {queue}/{app}`` → the request and where to follow it."""

    request_id: str
    response_url: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None
    queue_position: int | None = None


class QueueStatusAnswer(_Wire):
    """``GET …/requests/{id}/status``; a failed request is ``COMPLETED`` with an ``error``."""

    status: str
    queue_position: int | None = None
    response_url: str | None = None
    error: str | None = None
    error_type: str | None = None


class CancelAnswer(_Wire):
    """``PUT …/requests/{id}/cancel``."""

    status: str


def video_url(output: Mapping[str, Any]) -> str | None:
    """``output.video.url`` (fal's ``File``), or ``output.video`` given as a bare string."""
    video = output.get("video")
    if isinstance(video, str):
        return video
    if isinstance(video, Mapping) and isinstance(video.get("url"), str):
        return str(video["url"])
    return None


def detail_text(body: object) -> str:
    """fal's ``detail`` as one line: a string, or FastAPI-style ``[{loc, msg}]`` problems."""
    if not isinstance(body, Mapping):
        return ""
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return "" if detail is None else str(detail)


def error_from_response(
    response: httpx.Response, *, operation: str, request_id: str | None = None
) -> ProviderError | None:
    """The ProviderError a fal answer means, or None for a 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    try:
        body: object = response.json()
    except ValueError:
        body = None
    text = detail_text(body) or response.reason_phrase
    if len(text) > MAX_QUOTED_CHARS:
        text = text[:MAX_QUOTED_CHARS] + " … (truncated)"
    message = f"{operation}: HTTP {status}: {text}"
    detail = body.get("detail") if isinstance(body, Mapping) else None
    kwargs: dict[str, Any] = {"status_code": status, "detail": detail, "request_id": request_id}
    lowered = text.lower()
    if status == 402 or (status in (401, 403) and any(w in lowered for w in _NO_BALANCE_WORDS)):
        return NoBalance(message, **kwargs)
    if status in (401, 403):
        return AuthError(message, **kwargs)
    if status == 429:
        return RateLimited(message, retry_after=parse_retry_after(response.headers), **kwargs)
    if status == 408:
        return TransportError(message, **kwargs)
    if 400 <= status < 500:
        return BadRequest(message, **kwargs)
    return UpstreamError(message, **kwargs)
