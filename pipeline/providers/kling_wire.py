"""Kling's own API on the wire: the signed token, the request body, answers and service codes.

Sources (cited again in ``tests/pipeline/providers/test_kling_contract.py``):

- Kling's "General Information" page (``app.klingai.com/global/dev/document-api/apiReference/
  commonInfo``): JWT HS256 with ``iss`` = access key, ``exp`` = now + 1800, ``nbf`` = now − 5,
  sent as ``Authorization: Bearer <token>``; answers ``{code, message, request_id, data}``; the
  service-code table (HTTP status and code; 429 carries both "stop" and "slow down" codes).
- The Vercel AI SDK's Kling provider (``vercel/ai`` ``packages/klingai/src``): paths
  ``/v1/videos/text2video`` and ``/v1/videos/image2video``, ``GET {path}/{id}``; ``model_name``
  ``kling-v3``; ``mode`` std/pro; ``duration`` and multi-prompt durations as strings; ``sound``
  on/off; ``multi_shot`` + ``shot_type: customize`` + ``multi_prompt [{index, prompt,
  duration}]`` (at most 6 shots, 512 characters each); images as a URL or raw base64; no
  ``aspect_ratio`` on image-to-video; status words submitted/processing/succeed/failed and
  ``task_result.videos[].url``.
- Kling's "Create Task" page: ``external_task_id`` (echoed in ``task_info``; unique per
  account), ``aspect_ratio`` 16:9 / 9:16 / 1:1, and the query of one task by either id in the path.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import jwt
from jwt.warnings import InsecureKeyLengthWarning
from pydantic import SecretStr

from pipeline.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    NoBalance,
    ProviderError,
    RateLimited,
    TransportError,
    UpstreamError,
)
from pipeline.generation import MAX_PROMPT_CHARS, MAX_SHOTS, GenerationSpec
from pipeline.pricing import Tier
from pipeline.providers import kling_elements as ke
from pipeline.providers.base import JobState
from pipeline.providers.kling_settings import DEFAULT_ELEMENT_MENTION, DEFAULT_ELEMENT_TAG, KlingSettings
from pipeline.providers.retry import parse_retry_after
from pipeline.providers.wire import UnreadableAnswer

TEXT2VIDEO: Final = "text2video"
IMAGE2VIDEO: Final = "image2video"
KINDS: Final = (TEXT2VIDEO, IMAGE2VIDEO)
#: Longest prompt of one shot of ``multi_prompt``.
MAX_SHOT_PROMPT_CHARS: Final = 512
#: A token is renewed this long before it expires, so no request carries one about to lapse.
TOKEN_MARGIN_S: Final = 60
#: ``nbf`` this far in the past: tolerance for a server clock a little behind ours (the docs' 5 s).
NBF_SKEW_S: Final = 5
MODES: Final = {Tier.STANDARD: "std", Tier.PRO: "pro"}
#: Picture shapes text2video takes (image2video takes the image's own).
ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1")

#: Kling's task status words → our states.
STATUS_WORDS: Final = {
    "submitted": JobState.QUEUED,
    "processing": JobState.RUNNING,
    "succeed": JobState.COMPLETED,
    "failed": JobState.FAILED,
}

# Service codes (General Information, "Error Code"): those that mean "stop the run".
AUTH_CODES: Final = frozenset({1000, 1001, 1002, 1003, 1004, 1100, 1103, 1304})
BALANCE_CODES: Final = frozenset({1101, 1102})
#: 429 with these codes means "slow down": retried.
RATE_CODES: Final = frozenset({1302, 1303})
#: The duplicate ``external_task_id`` refusal (a parameter error, 1201) is recognised by its text.
DUPLICATE_MARK: Final = "external_task_id"


def sign_token(access_key: str, secret_key: str, *, ttl_s: int, now: float | None = None) -> str:
    """A JWT (HS256) for the API: issuer the access key, valid from now − 5 s for ``ttl_s``."""
    issued = int(time.time() if now is None else now)
    payload = {"iss": access_key, "exp": issued + ttl_s, "nbf": issued - NBF_SKEW_S}
    with warnings.catch_warnings():
        # PyJWT warns about HMAC keys under 32 bytes; the key is the one Kling issued, not ours
        # to choose, and the API verifies it as it is.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, secret_key, algorithm="HS256", headers={"typ": "JWT"})


class KlingJwtAuth(httpx.Auth):
    """``Authorization: Bearer <JWT>`` per request, re-signed shortly before the token lapses.

    The keys stay SecretStr; the repr shows neither. Never attached to a download.
    """

    def __init__(self, access_key: SecretStr, secret_key: SecretStr, *, ttl_s: int) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._ttl_s = ttl_s
        self._token: str | None = None
        self._renew_at = 0.0

    def token(self) -> str:
        """The current token (signed anew when it is close to expiring)."""
        now = time.time()
        if self._token is None or now >= self._renew_at:
            self._token = sign_token(
                self._access_key.get_secret_value(),
                self._secret_key.get_secret_value(),
                ttl_s=self._ttl_s,
                now=now,
            )
            self._renew_at = now + max(self._ttl_s - TOKEN_MARGIN_S, self._ttl_s / 2)
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the header and send the request."""
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request

    def __repr__(self) -> str:
        return "KlingJwtAuth(access_key='**********', secret_key='**********')"


def external_task_id(external_id: str, max_chars: int) -> str:
    """``external_id`` as sent: unchanged when short enough, else shortened deterministically
    (its head and a digest of the whole), so a lookup after a lost answer finds the same task."""
    if len(external_id) <= max_chars:
        return external_id
    digest = hashlib.sha256(external_id.encode()).hexdigest()[:16]
    return f"{external_id[: max_chars - len(digest) - 1]}-{digest}"


def kind_of(spec: GenerationSpec) -> str:
    """``image2video`` when the request starts from an image, else ``text2video``."""
    return IMAGE2VIDEO if spec.start_image_url else TEXT2VIDEO


def image_value(url: str) -> str:
    """An image as the API takes it: an URL as is, a data URI as its raw base64 (no prefix)."""
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        if ";base64" in head:
            return data
    return url


def build_body(
    spec: GenerationSpec,
    *,
    model_name: str,
    external_id_max_chars: int = 64,
    element_ids: Mapping[str, ke.ElementId] | None = None,
    element_mention: str = DEFAULT_ELEMENT_MENTION,
    max_elements: int = 3,
    single_image: str = "repeat",
    element_tag: str = DEFAULT_ELEMENT_TAG,
) -> dict[str, Any]:
    """The JSON submitted for ``spec`` (pure). ConfigError for a tier the API does not sell.

    Elements sent natively (:func:`~pipeline.providers.kling_elements.native_elements`) go as
    ``element_list`` entries with their ids from ``element_ids``; an element not created yet
    (``plan --json``) shows ``element_id: null`` and the ``create`` body that will make it.
    """
    mode = MODES.get(spec.tier)
    if mode is None:
        raise ConfigError(f"Kling's API has no {spec.tier.value} tier (it offers std and pro)")
    natives = ke.native_elements(spec, max_elements=max_elements, single_image=single_image)
    rewrite = ke.mention_rewriter(spec, natives, element_mention)
    body: dict[str, Any] = {"model_name": model_name, "mode": mode, "duration": str(spec.duration)}
    if spec.shots:
        body["multi_shot"] = True
        body["shot_type"] = "customize"
        body["multi_prompt"] = [
            {"index": k, "prompt": rewrite(shot.prompt), "duration": str(shot.duration)}
            for k, shot in enumerate(spec.shots, start=1)
        ]
    else:
        body["prompt"] = rewrite(spec.prompt)
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    body["sound"] = "on" if spec.generate_audio else "off"
    if spec.start_image_url:
        body["image"] = image_value(spec.start_image_url)
        if spec.end_image_url:
            body["image_tail"] = image_value(spec.end_image_url)
    else:
        body["aspect_ratio"] = spec.aspect_ratio
    if natives:
        # element_list and voice_list cannot go together on image2video: no voice_list is sent.
        ids = element_ids or {}
        body["element_list"] = [
            {"element_id": ids[e.name]}
            if e.name in ids
            else {"element_id": None, "create": ke.creation_body(e, tag=element_tag, image_value=image_value)}
            for e in natives
        ]
    if spec.external_id:
        body["external_task_id"] = external_task_id(spec.external_id, external_id_max_chars)
    return body


def body_for(
    spec: GenerationSpec, settings: KlingSettings, element_ids: Mapping[str, ke.ElementId] | None = None
) -> dict[str, Any]:
    """:func:`build_body` with the knobs of ``settings`` (the adapter's and ``plan --json``'s)."""
    return build_body(
        spec,
        model_name=settings.model_name,
        external_id_max_chars=settings.external_id_max_chars,
        element_ids=element_ids,
        element_mention=settings.element_mention,
        max_elements=settings.max_elements,
        single_image=settings.single_image_elements,
        element_tag=settings.element_tag,
    )


def check_body(body: Mapping[str, Any]) -> list[str]:
    """Prompt lengths of a built body over the API's limits (mentions rewritten may add length)."""
    problems: list[str] = []
    for shot in body.get("multi_prompt", ()):
        if len(shot["prompt"]) > MAX_SHOT_PROMPT_CHARS:
            problems.append(f"shot {shot['index']}: prompt over {MAX_SHOT_PROMPT_CHARS} characters")
    if len(body.get("prompt", "")) > MAX_PROMPT_CHARS:
        problems.append(f"prompt over {MAX_PROMPT_CHARS} characters")
    return problems


def check_spec(spec: GenerationSpec, body: Mapping[str, Any] | None = None) -> list[str]:
    """What the API would refuse in ``spec`` (empty when nothing): checked before any money.

    Prompt lengths are read in ``body`` (the adapter's, mentions rewritten; by default the body
    :func:`build_body` gives with its defaults).
    """
    problems: list[str] = []
    if spec.tier not in MODES:
        problems.append(f"tier {spec.tier.value}: Kling's API offers std and pro")
    if not spec.start_image_url and spec.aspect_ratio not in ASPECT_RATIOS:
        problems.append(f"aspect ratio {spec.aspect_ratio}: text2video takes {', '.join(ASPECT_RATIOS)}")
    if spec.shots:
        if len(spec.shots) > MAX_SHOTS:
            problems.append(f"{len(spec.shots)} shots: multi_prompt takes at most {MAX_SHOTS}")
        total = sum(s.duration for s in spec.shots)
        if total != spec.duration:
            problems.append(f"shot durations sum to {total} s, the request lasts {spec.duration} s")
    if body is None and spec.tier in MODES:
        body = build_body(spec, model_name="")
    return problems + check_body(body or {})


@dataclass(frozen=True)
class Task:
    """One task as an answer describes it."""

    task_id: str
    status: str
    external_task_id: str | None = None
    status_msg: str | None = None
    video_urls: tuple[str, ...] = ()

    @property
    def state(self) -> JobState:
        """Our state for Kling's status word (an unknown word counts as still running)."""
        return STATUS_WORDS.get(self.status, JobState.RUNNING)


def task_of(data: object, operation: str) -> Task:
    """The task in an answer's ``data``; UnreadableAnswer when it has not the documented shape."""
    if not isinstance(data, dict) or not isinstance(data.get("task_id"), str) or not data["task_id"]:
        raise UnreadableAnswer(f"{operation}: the answer has no data.task_id")
    info = data.get("task_info")
    external = info.get("external_task_id") if isinstance(info, dict) else None
    result = data.get("task_result")
    videos = result.get("videos") if isinstance(result, dict) else None
    urls = tuple(
        v["url"] for v in (videos if isinstance(videos, list) else []) if isinstance(v, dict) and v.get("url")
    )
    status = data.get("task_status")
    message = data.get("task_status_msg")
    return Task(
        task_id=data["task_id"],
        status=status if isinstance(status, str) else "",
        external_task_id=external if isinstance(external, str) else None,
        status_msg=message if isinstance(message, str) and message else None,
        video_urls=urls,
    )


def error_of(
    response: httpx.Response, *, operation: str, request_id: str | None = None
) -> ProviderError | None:
    """The ProviderError an answer means, or None for a success (HTTP 2xx with ``code`` 0).

    By service code first (the same HTTP 429 means "no balance" for 1102 and "slow down" for
    1302), by HTTP status otherwise.
    """
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    status = response.status_code
    if 200 <= status < 300 and code == 0:
        return None
    text = body.get("message") if isinstance(body, dict) else None
    message = f"{operation}: HTTP {status}" + (f" code {code}" if code is not None else "")
    if isinstance(text, str) and text.strip():
        message += f": {text.strip()[:300]}"
    kwargs: dict[str, Any] = {"status_code": status, "error_code": code, "request_id": request_id}
    if code in BALANCE_CODES or status == 402:
        return NoBalance(message, **kwargs)
    if code in AUTH_CODES or status in (401, 403):
        return AuthError(message, **kwargs)
    if code in RATE_CODES or status == 429:
        return RateLimited(message, retry_after=parse_retry_after(response.headers), **kwargs)
    if status == 408:
        return TransportError(message, **kwargs)
    if 400 <= status < 500:
        return BadRequest(message, **kwargs)
    if status >= 500 or (code is not None and code >= 5000):
        return UpstreamError(message, **kwargs)
    # A 2xx without code 0: nothing can be read from it about the request.
    return UnreadableAnswer(message, **kwargs)


def is_duplicate(error: ProviderError) -> bool:
    """True for the refusal of an ``external_task_id`` that an earlier submit already created."""
    return isinstance(error, BadRequest) and DUPLICATE_MARK in str(error) and "exist" in str(error)
