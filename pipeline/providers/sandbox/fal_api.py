"""The sandbox's fal.ai dialect: fal's queue API for the Kling 3.0 apps, as a rehearsal meets it.

Paths (at the server's root, as on ``queue.fal.run``): submit ``POST /fal-ai/kling-video/v3/
{tier}/{mode}``, create a voice ``POST /fal-ai/kling-video/create-voice``; per request, under
``/fal-ai/kling-video/requests/{id}`` (fal keeps requests under the app's owner and alias):
``GET …/status``, ``GET …`` (the result), ``PUT …/cancel``. Auth is ``Authorization: Key …``
(when the sandbox has a token); errors are fal's ``{"detail": …}`` bodies, a 422 listing every
problem FastAPI-style; an account out of money answers 403 "User is locked. Reason: Exhausted
balance" (as fal does, ``fal-ai/fal`` issues #1147, #1162). The wire format is
:mod:`pipeline.providers.fal_wire`, shared with the adapter. Costs follow fal's price table,
with the voice-control rate when ``voice_ids`` are sent with audio on.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from pathlib import Path
from typing import Any, Final

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pipeline.pricing import Tier
from pipeline.providers import fal_wire
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.faults import CUT_HEADER
from pipeline.providers.sandbox.images import ImageInput, classify
from pipeline.providers.sandbox.inputs import MODES, KlingInput
from pipeline.providers.sandbox.intake import ImageStore, frame_of
from pipeline.providers.sandbox.render import Placeholder
from pipeline.providers.sandbox.state import Frame, Job, SandboxState

APP: Final = "fal-ai/kling-video"
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
MAX_PROMPT: Final = 2500
MAX_SHOT_PROMPT: Final = 512
MAX_SHOTS: Final = 6
MAX_VOICES: Final = 2
_ELEMENT = re.compile(r"@Element(\d+)")
_VOICE = re.compile(r"<<<voice_(\d+)>>>")
DIALECT: Final = "fal"


def detail(status: int, message: object, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """fal's error body: ``{"detail": …}``."""
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _problem(loc: list[str | int], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _duration(value: object) -> int | None:
    # fal's DurationEnum is a string ("3" … "15"): a JSON number is refused, as pydantic would.
    if isinstance(value, str) and value.isdigit() and 3 <= int(value) <= 15:
        return int(value)
    return None


def _shot_seconds(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def validate(mode: str, body: object, voices: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The accepted fields of a Kling 3.0 submit, or every problem with it."""
    if not isinstance(body, dict):
        return {}, [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    problems: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    duration = _duration(body.get("duration", "5"))
    if duration is None:
        problems.append(_problem(["duration"], "Input should be '3', '4', … or '15'", "enum"))
    prompt, shots = body.get("prompt"), body.get("multi_prompt")
    if (prompt is None) == (shots is None):
        problems.append(_problem(["prompt"], "Either prompt or multi_prompt must be provided, but not both"))
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT):
        problems.append(_problem(["prompt"], f"a non-empty string of at most {MAX_PROMPT} characters"))
    out["shots"] = ()
    if shots is not None:
        out["shots"] = _storyboard(shots, duration, problems)
    texts = [prompt] if isinstance(prompt, str) else [text for text, _ in out["shots"]]
    audio = body.get("generate_audio", True)
    if not isinstance(audio, bool):
        problems.append(_problem(["generate_audio"], "Input should be a valid boolean", "bool_type"))
    aspect = body.get("aspect_ratio", "16:9")
    if mode == "text-to-video" and aspect not in fal_wire.ASPECT_RATIOS:
        problems.append(_problem(["aspect_ratio"], f"one of {', '.join(fal_wire.ASPECT_RATIOS)}", "enum"))
    cfg = body.get("cfg_scale", 0.5)
    if isinstance(cfg, bool) or not isinstance(cfg, int | float) or not 0 <= cfg <= 1:
        problems.append(_problem(["cfg_scale"], "a number from 0 to 1"))
    negative = body.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        problems.append(_problem(["negative_prompt"], "Input should be a valid string", "string_type"))
    start, end = body.get("start_image_url"), body.get("end_image_url")
    if mode == "image-to-video" and not isinstance(start, str):
        problems.append(_problem(["start_image_url"], "Field required", "missing"))
    elements = _elements(body.get("elements", []), problems)
    voice_ids = body.get("voice_ids", [])
    if not isinstance(voice_ids, list) or len(voice_ids) > MAX_VOICES:
        problems.append(_problem(["voice_ids"], f"a list of at most {MAX_VOICES} voice ids"))
        voice_ids = []
    for i, voice in enumerate(voice_ids):
        if voice not in voices:
            problems.append(_problem(["voice_ids", i], "unknown voice id (create it with create-voice)"))
    for text in texts:
        for m in _ELEMENT.finditer(text):
            if not 1 <= int(m.group(1)) <= len(elements):
                problems.append(_problem(["prompt"], f"{m.group(0)}: no such element in elements"))
        for m in _VOICE.finditer(text):
            if not 1 <= int(m.group(1)) <= len(voice_ids):
                problems.append(_problem(["prompt"], f"{m.group(0)}: no such voice in voice_ids"))
    out.update(
        duration=duration,
        prompt=prompt
        if isinstance(prompt, str)
        else "\n".join(f"Shot {i + 1}: {t}" for i, t in enumerate(texts)),
        audio=audio is True,
        aspect=str(aspect) if aspect in fal_wire.ASPECT_RATIOS else "16:9",
        cfg=float(cfg) if isinstance(cfg, int | float) else 0.5,
        negative=negative if isinstance(negative, str) else None,
        start=start if mode == "image-to-video" and isinstance(start, str) else None,
        end=end if mode == "image-to-video" and isinstance(end, str) else None,
        elements=elements,
        voices=len(voice_ids),
    )
    return out, problems


def _storyboard(
    shots: object, duration: int | None, problems: list[dict[str, Any]]
) -> tuple[tuple[str, int], ...]:
    if not isinstance(shots, list) or not 1 <= len(shots) <= MAX_SHOTS:
        problems.append(_problem(["multi_prompt"], f"a list of 1 to {MAX_SHOTS} shots"))
        return ()
    found: list[tuple[str, int]] = []
    for i, shot in enumerate(shots):
        text = shot.get("prompt") if isinstance(shot, dict) else None
        seconds = _shot_seconds(shot.get("duration")) if isinstance(shot, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_SHOT_PROMPT:
            problems.append(_problem(["multi_prompt", i, "prompt"], f"1 to {MAX_SHOT_PROMPT} characters"))
        if seconds is None:
            problems.append(_problem(["multi_prompt", i, "duration"], "whole seconds, at least 1"))
        found.append((text if isinstance(text, str) else "", seconds or 0))
    if duration is not None and sum(s for _, s in found) != duration:
        problems.append(_problem(["multi_prompt"], f"the shots' durations must sum to duration ({duration})"))
    return tuple(found)


def _elements(value: object, problems: list[dict[str, Any]]) -> list[list[str]]:
    if not isinstance(value, list):
        problems.append(_problem(["elements"], "Input should be a valid list", "list_type"))
        return []
    found: list[list[str]] = []
    for i, item in enumerate(value):
        front = item.get("frontal_image_url") if isinstance(item, dict) else None
        refs = item.get("reference_image_urls", []) if isinstance(item, dict) else []
        if (
            not isinstance(front, str)
            or not isinstance(refs, list)
            or not all(isinstance(r, str) for r in refs)
        ):
            problems.append(
                _problem(["elements", i], "frontal_image_url and reference_image_urls: image URLs")
            )
            continue
        found.append([front, *refs])
    return found


def fal_router(state: SandboxState, config: SandboxConfig, store: ImageStore) -> APIRouter:
    """fal's queue routes over the shared sandbox state (mounted by ``create_app``)."""
    router = APIRouter()
    voices: dict[str, str] = {}  # voice id → digest of the clip it was made from
    voice_requests: dict[str, str] = {}  # request id → voice id

    def check_auth(request: Request) -> Response | None:
        if config.token is None:
            return None
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("key "):
            return detail(401, "Missing or invalid Authorization header: expected 'Key <FAL_KEY>'")
        if not secrets.compare_digest(header[4:].strip().encode(), config.token.get_secret_value().encode()):
            return detail(403, "Invalid key")
        return None

    def fault() -> Response | None:
        if state.dice.roll(state.faults.rate_limit):
            return detail(429, "Rate limit exceeded (injected)", headers={"Retry-After": "1"})
        if state.dice.roll(state.faults.server_error):
            return detail(state.dice.choice((500, 502, 503)), "Internal server error (injected)")
        return None

    def maybe_drop(response: Response) -> Response:
        if state.dice.roll(state.faults.drop):
            response.headers[CUT_HEADER.decode()] = "0"
        return response

    def urls(request: Request, rid: str) -> dict[str, str]:
        base = f"{str(request.base_url).rstrip('/')}/{APP}/requests/{rid}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    def frames(images: list[ImageInput]) -> tuple[tuple[Frame, ...], str | None]:
        shown: list[Frame] = []
        for image in images:
            found = frame_of(image, realistic=config.realistic, store=store)
            if isinstance(found, str):
                return (), found
            shown.append(found)
        return tuple(shown), None

    @router.post(f"/{APP}/v3/{{tier}}/{{mode}}")
    async def submit(tier: str, mode: str, request: Request) -> Response:
        data = await request.body()
        body: object = None
        try:
            body = None if len(data) > MAX_BODY_BYTES else json.loads(data)
        except ValueError:
            body = None
        model_id = f"{APP}/v3/{tier}/{mode}"
        fields, problems = validate(mode, body, set(voices))
        named = {"start_image_url": fields.get("start"), "end_image_url": fields.get("end")}
        # Decoding data URIs (megabytes of base64) happens off the event loop, once.
        start_images, element_images = await anyio.to_thread.run_sync(
            _classify, {k: v for k, v in named.items() if v}, fields.get("elements", [])
        )

        def log(response: Response, request_id: str | None = None) -> Response:
            state.requests.record(
                model_id,
                body,
                start_images,
                status=response.status_code,
                request_id=request_id,
                dialect=DIALECT,
                shots=[s for _, s in fields.get("shots", ())],
                elements=element_images,
                voices=fields.get("voices", 0),
            )
            return response

        if (denied := check_auth(request)) is not None:
            return log(denied)
        if (injected := fault()) is not None:
            return log(injected)
        if tier not in (Tier.STANDARD.value, Tier.PRO.value) or mode not in MODES:
            return log(detail(404, f"Application '{model_id}' not found"))
        start_end, problem = frames(
            [start_images[k] for k in ("start_image_url", "end_image_url") if k in start_images]
        )
        if problem:
            problems.append(_problem(["start_image_url"], problem))
        shown_elements: list[tuple[str, tuple[Path | Placeholder, ...]]] = []
        for k, images in enumerate(element_images, start=1):
            shown, problem = frames(images)
            if problem:
                problems.append(_problem(["elements", k - 1], problem))
            shown_elements.append((f"Element{k}", tuple(f for f in shown if f is not None)))
        if problems:
            return log(detail(422, problems))
        inp = KlingInput(
            tier=Tier(tier),
            mode=mode,
            prompt=fields["prompt"],
            duration=fields["duration"],
            aspect_ratio=fields["aspect"],
            cfg_scale=fields["cfg"],
            generate_audio=fields["audio"],
            negative_prompt=fields["negative"],
            seed=None,
            start_image_url=_identity(fields["start"], start_images.get("start_image_url")),
            end_image_url=_identity(fields["end"], start_images.get("end_image_url")),
            shots=fields["shots"],
            elements=tuple(
                (name, tuple(_identity(raw, image) or "" for raw, image in zip(raws, images, strict=True)))
                for (name, _), raws, images in zip(
                    shown_elements, fields["elements"], element_images, strict=True
                )
            ),
            dialect=DIALECT,
        )
        voice = fields["voices"] > 0
        wait = state.submit_wait()
        if wait > 0:
            state.rate_limited += 1
            return log(
                detail(429, "Too many requests", headers={"Retry-After": str(max(int(wait + 0.999), 1))})
            )
        if (
            config.balance_usd is not None
            and state.committed_usd() + state.cost_of(inp, voice=voice) > config.balance_usd
        ):
            return log(
                detail(
                    403,
                    "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.",
                )
            )
        padded = (*start_end, None, None)
        job = state.accept(model_id, inp, (padded[0], padded[1]), elements=tuple(shown_elements), voice=voice)
        log(Response(status_code=200), job.request_id)
        answer = {"request_id": job.request_id, **urls(request, job.request_id), "queue_position": 0}
        # A drop here loses the answer of a request that *was* created and will be billed.
        return maybe_drop(JSONResponse(answer))

    @router.post(f"/{APP}/create-voice")
    async def create_voice(request: Request) -> Response:
        if (denied := check_auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            body = None
        url = body.get("voice_url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "data:")):
            return detail(422, [_problem(["voice_url"], "an https:// URL or a data: URI of 5–30 s of audio")])
        rid = str(uuid.uuid4())
        voice_id = str(800000000000000000 + int(uuid.uuid4().int % 10**17))
        voices[voice_id] = rid
        voice_requests[rid] = voice_id
        return JSONResponse({"request_id": rid, **urls(request, rid), "queue_position": 0})

    def find(rid: str, request: Request) -> Job | str | Response:
        if (denied := check_auth(request)) is not None:
            return denied
        if (injected := fault()) is not None:
            return injected
        if rid in voice_requests:
            return voice_requests[rid]
        return state.jobs.get(rid) or detail(404, f"Request {rid} not found")

    @router.get(f"/{APP}/requests/{{rid}}/status")
    async def status(rid: str, request: Request) -> Response:
        found = find(rid, request)
        if isinstance(found, Response):
            return found
        body: dict[str, Any] = {"request_id": rid, **urls(request, rid), "logs": None, "metrics": {}}
        if isinstance(found, str):
            return JSONResponse({**body, "status": fal_wire.COMPLETED})
        word = {"in_queue": fal_wire.IN_QUEUE, "in_progress": fal_wire.IN_PROGRESS}.get(
            found.status, fal_wire.COMPLETED
        )
        body["status"] = word
        if word == fal_wire.IN_QUEUE:
            body["queue_position"] = (state.queue_position(found) or 1) - 1
        if found.status in ("failed", "cancelled"):
            body["error"] = found.error or "Request was cancelled"
            body["error_type"] = "cancelled" if found.status == "cancelled" else "generation_failed"
        return maybe_drop(JSONResponse(body))

    @router.get(f"/{APP}/requests/{{rid}}")
    async def result(rid: str, request: Request) -> Response:
        found = find(rid, request)
        if isinstance(found, Response):
            return found
        if isinstance(found, str):
            return JSONResponse({"voice_id": found})
        if found.status in ("in_queue", "in_progress"):
            return detail(400, "Request is still in progress")
        if found.status != "completed" or not found.video_name:
            return detail(422, found.error or "Request was cancelled")
        base = config.video_base(str(request.base_url).rstrip("/"), request.url.port)
        size = (state.videos_dir / found.video_name).stat().st_size
        video = {
            "url": f"{base}/videos/{rid}.mp4",
            "content_type": "video/mp4",
            "file_name": f"{rid}.mp4",
            "file_size": size,
        }
        return maybe_drop(JSONResponse({"video": video}))

    @router.put(f"/{APP}/requests/{{rid}}/cancel")
    async def cancel(rid: str, request: Request) -> Response:
        found = find(rid, request)
        if isinstance(found, Response):
            return (
                JSONResponse({"status": "NOT_FOUND"}, status_code=404) if found.status_code == 404 else found
            )
        if isinstance(found, str) or not found.in_flight:
            return JSONResponse({"status": fal_wire.ALREADY_COMPLETED}, status_code=400)
        # A queued request is removed; a running one gets a signal this "model app" ignores.
        state.cancel(found)
        return JSONResponse({"status": fal_wire.CANCELLATION_REQUESTED}, status_code=202)

    return router


def _classify(
    named: dict[str, str], elements: list[list[str]]
) -> tuple[dict[str, ImageInput], list[list[ImageInput]]]:
    return {k: classify(v) for k, v in named.items()}, [[classify(u) for u in urls] for urls in elements]


def _identity(raw: str | None, image: ImageInput | None) -> str | None:
    """What the request's identity keeps of an image: a data URI by its digest, a URL as is."""
    if raw is None or image is None:
        return None
    return f"data:{image.mime};sha256,{image.sha256}" if image.kind == "data-uri" else raw
