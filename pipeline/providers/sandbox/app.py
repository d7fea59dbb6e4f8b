"""The sandbox's HTTP face: the RunComfy Model API paths, answers and error bodies.

Hosted-API paths (under ``/v1``): submit ``POST /models/{model_id}``, model info
``GET /models/{model_id}`` and ``GET /models`` (``search``, ``category``, ``include_schema``,
``limit``, ``offset``), ``GET /requests/{id}/status``, ``GET /requests/{id}/result``
(``?include_cost=true``), ``POST /requests/{id}/cancel``. Sandbox-only (never behind the token):
``GET /v1/sandbox/ledger``, ``GET /v1/sandbox/requests`` (the request log), ``GET
/v1/sandbox/stats``, ``POST /v1/sandbox/uploads`` (raw PNG/JPEG body → ``{url}``; not in
realistic mode), and files under ``/cdn/...`` (videos also under the CDN base URL's path).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp

from pipeline.pricing import request_cost
from pipeline.providers import wire
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.fal_api import fal_router
from pipeline.providers.sandbox.faults import CUT_HEADER, CutConnections, install_log_filter
from pipeline.providers.sandbox.images import ImageInput
from pipeline.providers.sandbox.inputs import parse_model_id
from pipeline.providers.sandbox.intake import ImageStore, classify_images, take
from pipeline.providers.sandbox.kling_api import kling_router
from pipeline.providers.sandbox.schema import list_models, model_info
from pipeline.providers.sandbox.state import Job, SandboxState

MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024
#: A submit body's size limit: the partner nodes' request limit
#: (runcomfy-com/comfyui-runcomfy-partner-nodes, shared/docs/provider-api.md: 64 MiB).
MAX_SUBMIT_BYTES: Final = 64 * 1024 * 1024
IMAGE_TYPES: Final = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg"}
CHUNK: Final = 256 * 1024
SLOW_CHUNK: Final = 16 * 1024
#: How many bytes of a clip a "corrupt" download zeroes, just after the 32-byte ftyp box, which
#: is where ``+faststart`` puts the index (moov): ffprobe cannot read the result.
CORRUPT_SPAN: Final = (32, 32 + 4096)


def error_response(
    status: int, code: int, message: str, *, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The API's error body ``{error_code, error_message, detail?}``."""
    body = wire.ErrorBody(error_code=code, error_message=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _retry_headers(seconds: float) -> dict[str, str]:
    # Retry-After is whole seconds by the standard; retry-after-ms keeps scaled tests fast.
    return {
        "Retry-After": str(max(math.ceil(seconds), 1)),
        "retry-after-ms": str(max(int(seconds * 1000), 1)),
    }


def _cut(response: Response, after: int = 0) -> Response:
    response.headers[CUT_HEADER.decode()] = str(after)
    return response


def _api_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/v1"


def _origin(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _read_json(request: Request, limit: int) -> tuple[object, bool]:
    """The body as JSON (None when it is not JSON), and whether it went over ``limit`` bytes."""
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            return None, True
    try:
        return json.loads(data), False
    except ValueError:
        return None, False


class SandboxApp(CutConnections):
    """The sandbox ASGI application; ``state`` gives tests and the starter its jobs and ledger."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        super().__init__(app)
        self.state = state


def create_app(config: SandboxConfig, data_dir: Path) -> SandboxApp:
    """The sandbox ASGI application (FastAPI inside the connection-cutting wrapper)."""
    state = SandboxState(config, data_dir)
    install_log_filter()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.close()

    app = FastAPI(title="klingflow sandbox (RunComfy Model API)", lifespan=lifespan, openapi_url=None)
    app.state.sandbox = state

    def check_auth(request: Request) -> Response | None:
        if config.token is None:
            return None
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return error_response(401, wire.CODE_UNAUTHENTICATED, "missing bearer token")
        if not secrets.compare_digest(header[7:].strip().encode(), config.token.get_secret_value().encode()):
            return error_response(403, wire.CODE_PERMISSION_DENIED, "permission denied")
        return None

    def injected(request: Request) -> Response | None:
        """An injected 429 / 5xx / error-in-200 answer, decided before any work is done."""
        if state.dice.roll(state.faults.rate_limit):
            wait = 0.5 * max(config.latency_scale, 0.01)
            return error_response(
                429, wire.CODE_RATE_LIMITED, "rate limited (injected)", headers=_retry_headers(wait)
            )
        if state.dice.roll(state.faults.server_error):
            status = state.dice.choice((500, 502, 503))
            return error_response(status, wire.CODE_INTERNAL, "internal error (injected)")
        if request.method == "GET" and state.dice.roll(state.faults.error_in_200):
            return error_response(200, wire.CODE_INTERNAL, "internal error (injected, HTTP 200)")
        return None

    def maybe_drop(response: Response) -> Response:
        return _cut(response) if state.dice.roll(state.faults.drop) else response

    def find(request_id: str) -> Job | Response:
        job = state.jobs.get(request_id)
        if job is None:
            return error_response(404, wire.CODE_NOT_FOUND, f"request {request_id} not found")
        return job

    def guarded(request_id: str, request: Request) -> Job | Response:
        """The job behind a per-request call, or the answer refusing it (auth, fault, 404)."""
        if (denied := check_auth(request)) is not None:
            return denied
        if (fault := injected(request)) is not None:
            return fault
        return find(request_id)

    def status_body(request: Request, job: Job) -> dict[str, Any]:
        base = _api_base(request)
        return wire.StatusAnswer(
            request_id=job.request_id,
            status=job.status,
            queue_position=state.queue_position(job),
            status_url=f"{base}/requests/{job.request_id}/status",
            result_url=f"{base}/requests/{job.request_id}/result",
        ).model_dump(exclude_none=True)

    store = ImageStore(state.images_dir, state.uploads_dir)
    app.include_router(kling_router(state, config))  # Kling's own API: /v1/videos/...
    app.include_router(fal_router(state, config, store))  # fal's queue: /fal-ai/kling-video/...

    @app.post("/v1/models/{model_id:path}")
    async def submit(model_id: str, request: Request) -> Response:
        body, too_big = await _read_json(request, MAX_SUBMIT_BYTES)
        # Decoding data URIs (megabytes of base64) happens off the event loop, once.
        images: dict[str, ImageInput] = await anyio.to_thread.run_sync(classify_images, body)

        def refuse(response: Response) -> Response:
            state.requests.record(model_id, body, images, status=response.status_code)
            return response

        if (denied := check_auth(request)) is not None:
            return refuse(denied)
        if too_big:
            return refuse(error_response(413, 413001, f"request body over {MAX_SUBMIT_BYTES} bytes"))
        if (fault := injected(request)) is not None:
            return refuse(fault)
        parsed = parse_model_id(model_id)
        if parsed is None:
            return refuse(error_response(400, wire.CODE_BAD_MODEL, f"unknown model id {model_id!r}"))
        intake = await anyio.to_thread.run_sync(take, config, store, parsed[0], parsed[1], body, images)
        if intake.inp is None or intake.problems:
            return refuse(
                error_response(422, wire.CODE_VALIDATION, "validation error", detail=intake.problems)
            )
        wait = state.submit_wait()
        if wait > 0:
            state.rate_limited += 1
            return refuse(
                error_response(429, wire.CODE_RATE_LIMITED, "too many requests", headers=_retry_headers(wait))
            )
        if config.balance_usd is not None:
            cost = request_cost(intake.inp.tier, intake.inp.duration, intake.inp.generate_audio)
            if state.committed_usd() + cost > config.balance_usd:
                return refuse(error_response(402, wire.CODE_NO_BALANCE, "insufficient balance"))
        job = state.accept(model_id, intake.inp, intake.frames)
        state.requests.record(model_id, body, images, status=200, request_id=job.request_id)
        base = _api_base(request)
        answer = wire.SubmitAnswer(
            request_id=job.request_id,
            status_url=f"{base}/requests/{job.request_id}/status",
            result_url=f"{base}/requests/{job.request_id}/result",
            cancel_url=f"{base}/requests/{job.request_id}/cancel",
        )
        # A drop here loses the answer of a request that *was* created: the hardest case.
        return maybe_drop(JSONResponse(answer.model_dump()))

    @app.get("/v1/models")
    async def models(
        request: Request,
        search: str | None = None,
        category: str | None = None,
        include_schema: bool = False,
        limit: int = Query(default=50, ge=1, le=500),
        offset: int = Query(default=0, ge=0),
    ) -> Response:
        if (denied := check_auth(request)) is not None:
            return denied
        listing = list_models(
            strict=config.realistic,
            search=search,
            category=category,
            include_schema=include_schema,
            limit=limit,
            offset=offset,
        )
        return JSONResponse(listing)

    @app.get("/v1/models/categories")
    async def categories(request: Request) -> Response:
        if (denied := check_auth(request)) is not None:
            return denied
        return JSONResponse({"categories": ["image-to-video", "text-to-video"]})

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str, request: Request) -> Response:
        if (denied := check_auth(request)) is not None:
            return denied
        parsed = parse_model_id(model_id)
        if parsed is None:
            return error_response(400, wire.CODE_BAD_MODEL, f"unknown model id {model_id!r}")
        return JSONResponse(model_info(model_id.strip("/"), *parsed, strict=config.realistic))

    @app.get("/v1/requests/{request_id}/status")
    async def status(request_id: str, request: Request) -> Response:
        job = guarded(request_id, request)
        if isinstance(job, Response):
            return job
        return maybe_drop(JSONResponse(status_body(request, job)))

    @app.get("/v1/requests/{request_id}/result")
    async def result(request_id: str, request: Request, include_cost: bool = False) -> Response:
        job = guarded(request_id, request)
        if isinstance(job, Response):
            return job
        output: dict[str, Any] | None = None
        if job.status == wire.COMPLETED and job.video_name:
            url = f"{config.video_base(_origin(request), request.url.port)}/videos/{job.request_id}.mp4"
            output = {"video": url} if config.output_field == "video" else {"videos": [url]}
        body: dict[str, Any] = {
            "request_id": job.request_id,
            "status": job.status,
            "output": output,
            "created_at": _iso(job.created_at),
            "finished_at": _iso(job.finished_at) if job.finished_at else None,
            "error": job.error,
        }
        if include_cost:
            body["cost"] = float(job.cost) if job.status == wire.COMPLETED else 0.0
        return maybe_drop(JSONResponse(body))

    @app.post("/v1/requests/{request_id}/cancel")
    async def cancel(request_id: str, request: Request) -> Response:
        job = guarded(request_id, request)
        if isinstance(job, Response):
            return job
        outcome = wire.OUTCOME_CANCELLED if state.cancel(job) else wire.OUTCOME_NOT_CANCELLABLE
        answer = wire.CancelAnswer(request_id=job.request_id, status=job.status, outcome=outcome)
        return maybe_drop(JSONResponse(answer.model_dump()))

    @app.get("/v1/sandbox/ledger")
    async def ledger() -> Response:
        entries = state.ledger.entries()
        charged = sum((e.cost_usd for e in entries if e.charged), Decimal(0))
        return JSONResponse(
            {
                "entries": [e.model_dump(mode="json") for e in entries],
                "total_charged_usd": str(charged),
                "file": str(state.ledger.path),
            }
        )

    @app.get("/v1/sandbox/requests")
    async def requests_log() -> Response:
        return JSONResponse({"requests": state.requests.entries()})

    @app.get("/v1/sandbox/stats")
    async def stats() -> Response:
        return JSONResponse(
            {
                "max_in_flight_seen": state.max_in_flight_seen,
                "accepted_times": state.accepted_times,
                "rate_limited": state.rate_limited,
                "downloads": state.downloads,
            }
        )

    @app.post("/v1/sandbox/uploads")
    async def upload(request: Request) -> Response:
        if config.realistic:  # the hosted API has no such door
            return error_response(404, wire.CODE_NOT_FOUND, "not found")
        data = bytearray()
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > MAX_UPLOAD_BYTES:
                return error_response(413, 413001, f"upload over {MAX_UPLOAD_BYTES} bytes")
        ext = next((e for magic, e in IMAGE_TYPES.items() if data.startswith(magic)), None)
        if ext is None:
            return error_response(422, wire.CODE_VALIDATION, "upload must be a PNG or JPEG image")
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest[:24]}.{ext}"
        target = state.uploads_dir / name
        if not target.exists():
            await anyio.Path(target).write_bytes(bytes(data))
        url = f"{_origin(request)}/cdn/uploads/{name}"
        return JSONResponse({"url": url, "sha256": digest, "size": len(data)}, status_code=201)

    @app.get("/cdn/uploads/{name}")
    async def uploaded(name: str) -> Response:
        path = state.uploads_dir / name
        if config.realistic or "/" in name or not path.is_file():
            return Response(status_code=404)
        media = "image/png" if name.endswith(".png") else "image/jpeg"
        return Response(await anyio.Path(path).read_bytes(), media_type=media)

    async def video(name: str) -> Response:
        job = state.jobs.get(name.removesuffix(".mp4"))
        if job is None or job.video_name is None:
            return Response(status_code=404)
        data = await anyio.Path(state.videos_dir / job.video_name).read_bytes()
        state.downloads[job.request_id] = state.downloads.get(job.request_id, 0) + 1
        headers = {"Content-Length": str(len(data))}
        if state.dice.roll(state.faults.corrupt):
            lo, hi = CORRUPT_SPAN
            data = data[:lo] + bytes(min(hi, len(data)) - lo) + data[hi:]
        slow = state.dice.roll(state.faults.slow)
        chunk = SLOW_CHUNK if slow else CHUNK

        async def body() -> AsyncIterator[bytes]:
            for offset in range(0, len(data), chunk):
                if slow:
                    await asyncio.sleep(state.faults.slow_delay_s)
                yield data[offset : offset + chunk]

        response = StreamingResponse(body(), media_type="video/mp4", headers=headers)
        if state.dice.roll(state.faults.truncate):
            _cut(response, len(data) // 2)
        return response

    # Videos live under /cdn/videos/, and under the CDN base URL's own path when it has another.
    app.add_api_route("/cdn/videos/{name}", video, methods=["GET"])
    if config.cdn_path != "/cdn":
        app.add_api_route(f"{config.cdn_path}/videos/{{name}}", video, methods=["GET"])
    return SandboxApp(app, state)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()
