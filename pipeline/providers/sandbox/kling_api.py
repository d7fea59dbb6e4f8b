"""The sandbox's Kling dialect: Kling's own task API, as its documentation describes it.

Paths: ``POST /v1/videos/text2video`` and ``/v1/videos/image2video`` create a task;
``GET /v1/videos/{text2video|image2video}/{id}`` reads it by ``task_id`` or by the
``external_task_id`` given at creation. Every answer is ``{code, message, request_id, data}``
(code 0 on success; the documented service codes otherwise: 1001–1004 for a missing, invalid,
early or expired JWT, 1102 for no balance, 1201 for a bad parameter, 1302 for too many
requests, 5000 for an internal error). Requests carry ``Authorization: Bearer <JWT>`` signed
HS256 with the sandbox's key pair (``kling_access_key`` as issuer). Status words are
``submitted``, ``processing``, ``succeed``, ``failed``; a finished task lists its video under
``task_result.videos``. A second task with an ``external_task_id`` already used is refused.

Elements (:mod:`pipeline.providers.sandbox.kling_elements`): created through
``/v1/general/advanced-custom-elements``, referenced by ``element_list: [{"element_id": …}]``
on image2video and named in prompts as ``<<<element_n>>>``; the request log lists each
referenced element's images (kind, sha256), and the render draws them in the shots naming them.

Fault injection: ``faults.submit_drop`` loses a submit's answer *after* its task was created
(the case ``external_task_id`` exists for); ``rate_limit``, ``server_error`` (nothing created)
and ``drop`` (any answer) apply as on the RunComfy paths.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from typing import Any, Final

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pipeline.generation import ASPECT_RATIOS, MAX_DURATION, MAX_PROMPT_CHARS, MAX_SHOTS, MIN_DURATION
from pipeline.pricing import Tier, provider_request_cost
from pipeline.providers import wire
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.faults import CUT_HEADER
from pipeline.providers.sandbox.images import MIME_BY_MAGIC, ImageInput, classify, closest_aspect, dimensions
from pipeline.providers.sandbox.inputs import KlingInput
from pipeline.providers.sandbox.intake import ImageStore, frame_of
from pipeline.providers.sandbox.kling_elements import ElementBook, add_element_routes
from pipeline.providers.sandbox.state import Frame, Job, SandboxState

KINDS: Final = {"text2video": "text-to-video", "image2video": "image-to-video"}
TIERS: Final = {"std": Tier.STANDARD, "pro": Tier.PRO}
MODEL_NAMES: Final = ("kling-v3",)
MAX_SHOT_PROMPT: Final = 512
#: text2video's shapes (kept apart from the adapter's list: the sandbox checks it, not echoes it).
ASPECT_RATIOS_T2V: Final = ("16:9", "9:16", "1:1")
#: How a prompt names the n-th entry of ``element_list``.
_MENTION: Final = re.compile(r"<<<element_(\d+)>>>")
_STATUS: Final = {
    wire.IN_QUEUE: "submitted",
    wire.IN_PROGRESS: "processing",
    wire.COMPLETED: "succeed",
    wire.FAILED: "failed",
    wire.CANCELLED: "failed",
}


def kling_error(
    status: int, code: int, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error answer as Kling shapes it: ``{code, message, request_id}``."""
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status, headers=headers)


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data})


def check_jwt(config: SandboxConfig, header: str) -> JSONResponse | None:
    """None when ``header`` carries a JWT of the configured key pair, else the refusal."""
    if config.kling_access_key is None or config.kling_secret_key is None:
        return kling_error(401, 1000, "authentication failed") if config.realistic else None
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        return kling_error(401, 1001, "Authorization is empty")
    try:
        claims = jwt.decode(
            header[7:].strip(),
            config.kling_secret_key.get_secret_value(),
            algorithms=["HS256"],
            options={"require": ["iss", "exp", "nbf"]},
        )
    except jwt.ImmatureSignatureError:
        return kling_error(401, 1003, "Authorization is not yet valid")
    except jwt.ExpiredSignatureError:
        return kling_error(401, 1004, "Authorization has expired")
    except jwt.InvalidTokenError:
        return kling_error(401, 1002, "Authorization is invalid")
    if claims.get("iss") != config.kling_access_key:
        return kling_error(401, 1002, "Authorization is invalid")
    return None


def image_input(value: str) -> ImageInput:
    """An image field as Kling takes it: an URL, or raw base64 (a data URI is read too)."""
    if value.startswith(("http://", "https://", "data:")):
        return classify(value)
    try:
        head = base64.b64decode(value[:16] + "=" * (-len(value[:16]) % 4))
    except (binascii.Error, ValueError):
        return ImageInput("invalid", problem="expected an image URL or base64 data")
    mime = next((m for magic, m in MIME_BY_MAGIC.items() if head.startswith(magic)), "image/png")
    return classify(f"data:{mime};base64,{value}")


def _int_string(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _shots(body: dict[str, Any], duration: int) -> tuple[tuple[tuple[str, int], ...], str | None]:
    """The customised storyboard and the problem with it, if any."""
    if body.get("shot_type") != "customize":
        return (), "shot_type: `customize` is required with multi_shot"
    items = body.get("multi_prompt")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_SHOTS:
        return (), f"multi_prompt: 1 to {MAX_SHOTS} shots"
    shots: list[tuple[str, int]] = []
    for k, item in enumerate(items, start=1):
        seconds = _int_string(item.get("duration")) if isinstance(item, dict) else None
        prompt = item.get("prompt") if isinstance(item, dict) else None
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_SHOT_PROMPT:
            return (), f"multi_prompt[{k}].prompt: 1 to {MAX_SHOT_PROMPT} characters"
        if seconds is None or seconds < 1 or item.get("index") != k:
            return (), f"multi_prompt[{k}]: index {k} and a duration string of whole seconds"
        shots.append((prompt, seconds))
    if sum(s for _, s in shots) != duration:
        return (), "multi_prompt: the shots' durations must sum to the duration"
    return tuple(shots), None


def _unknown_mention(fields: dict[str, Any], elements: int) -> str | None:
    """The first ``<<<element_n>>>`` of the prompts past the request's ``element_list``."""
    for m in _MENTION.finditer(fields.get("prompt", "")):
        if not 1 <= int(m.group(1)) <= elements:
            return f"prompt: {m.group(0)} names no entry of element_list"
    return None


def parse_body(kind: str, body: object) -> tuple[dict[str, Any], str | None]:
    """The fields of a create-task body, or the first problem (Kling reports one, code 1201)."""
    if not isinstance(body, dict):
        return {}, "the body must be a JSON object"
    if body.get("model_name") not in MODEL_NAMES:
        return {}, f"model_name: the sandbox serves {', '.join(MODEL_NAMES)}"
    tier = TIERS.get(str(body.get("mode", "std")))
    duration = _int_string(body.get("duration", "5"))
    if tier is None:
        return {}, "mode: std or pro"
    if duration is None or not MIN_DURATION <= duration <= MAX_DURATION:
        return {}, f"duration: a string from {MIN_DURATION} to {MAX_DURATION}"
    sound = body.get("sound", "off")
    if sound not in ("on", "off"):
        return {}, "sound: on or off"
    shots: tuple[tuple[str, int], ...] = ()
    prompt = body.get("prompt")
    if body.get("multi_shot") is True:
        shots, problem = _shots(body, duration)
        if problem:
            return {}, problem
        prompt = " ".join(p for p, _ in shots)
    elif not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        return {}, f"prompt: 1 to {MAX_PROMPT_CHARS} characters"
    aspect = body.get("aspect_ratio", "16:9")
    if kind == "text2video" and aspect not in ASPECT_RATIOS_T2V:
        return {}, f"aspect_ratio: one of {', '.join(ASPECT_RATIOS_T2V)}"
    if kind == "image2video" and not isinstance(body.get("image"), str):
        return {}, "image: required for image2video"
    external = body.get("external_task_id")
    if external is not None and (not isinstance(external, str) or not external):
        return {}, "external_task_id: a non-empty string"
    return {
        "tier": tier,
        "duration": duration,
        "audio": sound == "on",
        "shots": shots,
        "prompt": str(prompt),
        "aspect": aspect if aspect in ASPECT_RATIOS else "16:9",
        "external": external,
    }, None


def kling_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    """The Kling dialect's routes over the shared jobs, ledger and request log of ``state``."""
    router = APIRouter()
    store = ImageStore(state.images_dir, state.uploads_dir)
    by_external: dict[str, str] = {}  # external_task_id → task id
    externals: dict[str, str] = {}  # task id → external_task_id
    kinds: dict[str, str] = {}  # task id → text2video / image2video
    book = ElementBook(latency_scale=config.latency_scale)

    def fault(request: Request) -> JSONResponse | None:
        if state.dice.roll(state.faults.rate_limit):
            return kling_error(429, 1302, "rate limited (injected)", headers={"retry-after-ms": "20"})
        if state.dice.roll(state.faults.server_error):
            return kling_error(500, 5000, "internal error (injected)")
        return None

    def guard(request: Request) -> JSONResponse | None:
        return check_jwt(config, request.headers.get("authorization", "")) or fault(request)

    add_element_routes(
        router,
        book,
        store=store,
        realistic=config.realistic,
        guard=guard,
        image_input=image_input,
        error=lambda status, code, message: kling_error(status, code, message),
        ok=_ok,
    )

    def cut(response: Response, rate: float) -> Response:
        if state.dice.roll(rate):
            response.headers[CUT_HEADER.decode()] = "0"
        return response

    def task_data(request: Request, job: Job, external: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_id": job.request_id,
            "task_status": _STATUS.get(job.status, "processing"),
            "task_info": {"external_task_id": external} if external else {},
            "created_at": int(job.created_at * 1000),
            "updated_at": int((job.finished_at or job.created_at) * 1000),
        }
        if job.status == wire.FAILED:
            data["task_status_msg"] = job.error or "failed"
        if job.status == wire.COMPLETED and job.video_name:
            url = f"{config.video_base(str(request.base_url).rstrip('/'), request.url.port)}/videos/{job.request_id}.mp4"
            data["task_result"] = {
                "videos": [{"id": job.request_id, "url": url, "duration": str(job.inp.duration)}]
            }
        return data

    async def create(kind: str, request: Request) -> Response:
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        raw: dict[str, str] = {
            name: body[name]
            for name in ("image", "image_tail")
            if isinstance(body, dict) and isinstance(body.get(name), str) and body[name]
        }
        images = {name: image_input(value) for name, value in raw.items()}
        fields, problem = parse_body(kind, body)
        model_id = f"kling/kling-3.0/{fields['tier'].value if fields else 'unknown'}/{KINDS[kind]}"

        shots = [seconds for _, seconds in fields.get("shots", ())]
        used, element_problem = book.resolve(kind, body) if isinstance(body, dict) else ([], None)
        # The request log shows the images of the elements referenced (kind, digest; never a URI).
        logged = [list(e.images) for e in used]

        def refuse(response: JSONResponse) -> JSONResponse:
            state.requests.record(
                model_id,
                body,
                images,
                status=response.status_code,
                dialect="kling",
                shots=shots,
                elements=logged,
            )
            return response

        if (denied := check_jwt(config, request.headers.get("authorization", ""))) is not None:
            return refuse(denied)
        if (injected := fault(request)) is not None:
            return refuse(injected)
        problem = problem or element_problem or _unknown_mention(fields, len(used))
        if problem:
            return refuse(kling_error(400, 1201, problem))
        external = fields["external"]
        if external is not None and external in by_external:
            return refuse(kling_error(400, 1201, f"external_task_id {external} already exists"))
        frames: list[Frame] = [None, None]
        shown: dict[str, str] = {}
        for n, name in enumerate(("image", "image_tail")):
            if kind != "image2video" or name not in images:
                continue
            found = frame_of(images[name], realistic=config.realistic, store=store)
            if isinstance(found, str):
                return refuse(kling_error(400, 1201, f"{name}: {found}"))
            frames[n] = found
            image = images[name]
            # A data URI is kept by digest (as the RunComfy paths keep it), a URL as sent.
            shown[name] = (
                f"data:{image.mime};sha256,{image.sha256}" if image.kind == "data-uri" else raw[name]
            )
        aspect = fields["aspect"]
        start = images.get("image")
        if kind == "image2video" and start is not None and start.data and (size := dimensions(start.data)):
            aspect = closest_aspect(*size)
        if (wait := state.submit_wait()) > 0:
            state.rate_limited += 1
            return refuse(
                kling_error(
                    429, 1302, "too many requests", headers={"retry-after-ms": str(int(wait * 1000) + 1)}
                )
            )
        if config.balance_usd is not None:
            cost = provider_request_cost("kling", fields["tier"], fields["duration"], fields["audio"])
            if state.committed_usd() + cost > config.balance_usd:
                return refuse(kling_error(429, 1102, "resource pack depleted or expired"))
        inp = KlingInput(
            tier=fields["tier"],
            mode=KINDS[kind],
            prompt=fields["prompt"],
            duration=fields["duration"],
            aspect_ratio=aspect,
            cfg_scale=0.5,
            generate_audio=fields["audio"],
            negative_prompt=body.get("negative_prompt") if isinstance(body, dict) else None,
            seed=None,
            start_image_url=shown.get("image"),
            end_image_url=shown.get("image_tail"),
            shots=fields["shots"],
            elements=tuple((f"element_{n}", e.identity) for n, e in enumerate(used, start=1)),
            dialect="kling",
        )
        shown_elements = tuple((f"element_{n}", e.frames) for n, e in enumerate(used, start=1))
        job = state.accept(model_id, inp, (frames[0], frames[1]), elements=shown_elements)
        kinds[job.request_id] = kind
        if external is not None:
            by_external[external] = job.request_id
            externals[job.request_id] = external
        state.requests.record(
            model_id,
            body,
            images,
            status=200,
            request_id=job.request_id,
            dialect="kling",
            shots=shots,
            elements=logged,
        )
        answer = _ok(
            {
                "task_id": job.request_id,
                "task_status": "submitted",
                "task_info": {"external_task_id": external} if external else {},
                "created_at": int(time.time() * 1000),
                "updated_at": int(time.time() * 1000),
            }
        )
        # The hardest case: the task exists (and will be billed), its answer is lost.
        return cut(answer, max(state.faults.submit_drop, state.faults.drop))

    async def query(kind: str, some_id: str, request: Request) -> Response:
        if (denied := check_jwt(config, request.headers.get("authorization", ""))) is not None:
            return denied
        if (injected := fault(request)) is not None:
            return injected
        task_id = some_id if some_id in state.jobs else by_external.get(some_id)
        job = state.jobs.get(task_id) if task_id else None
        if job is None or kinds.get(job.request_id) != kind:
            return kling_error(404, 1203, f"task {some_id} does not exist")
        return cut(_ok(task_data(request, job, externals.get(job.request_id))), state.faults.drop)

    for kind in KINDS:
        router.add_api_route(f"/v1/videos/{kind}", _bind_create(create, kind), methods=["POST"])
        router.add_api_route(f"/v1/videos/{kind}/{{task_id}}", _bind_query(query, kind), methods=["GET"])
    return router


def _bind_create(create: Any, kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        response: Response = await create(kind, request)
        return response

    return endpoint


def _bind_query(query: Any, kind: str) -> Any:
    async def endpoint(task_id: str, request: Request) -> Response:
        response: Response = await query(kind, task_id, request)
        return response

    return endpoint
