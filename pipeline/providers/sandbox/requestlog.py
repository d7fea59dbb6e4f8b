"""The sandbox's request log: what each submit carried, for tests and operators.

``GET /v1/sandbox/requests`` answers ``{"requests": [...]}``, one entry per submit (accepted or
refused), oldest first::

    {"request_id": "…" | null, "model_id": "kling/kling-3.0/pro/image-to-video",
     "received_at": "2026-…Z", "fields": ["duration", "prompt", "start_image_url"],
     "images": {"start_image_url": {"kind": "data-uri", "sha256": "…", "bytes": 1234,
                                    "mime": "image/png", "host": null}},
     "prompt_chars": 42, "refused": false, "status": 200,
     "dialect": "runcomfy", "shots": [], "elements": [], "voices": 0}

``dialect`` is the API that received the submit (``runcomfy``, ``fal``, ``kling``); ``shots`` the
seconds of each shot of a native storyboard (``multi_prompt``), empty for a prose prompt;
``elements`` one list per element of its images' summaries (kind, sha256, …); ``voices`` how many
provider voices the request names. Image values are summarised (kind, digest of decoded bytes, size, host), never kept: a data
URI can be megabytes, and a presigned URL is a credential.
"""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime
from typing import Any

from pipeline.providers.sandbox.images import ImageInput


class RequestLog:
    """Submits as they arrived (thread-safe: the handle reads it from the test's thread)."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(
        self,
        model_id: str,
        body: object,
        images: dict[str, ImageInput],
        *,
        status: int,
        request_id: str | None = None,
        dialect: str = "runcomfy",
        shots: list[int] | None = None,
        elements: list[list[ImageInput]] | None = None,
        voices: int = 0,
    ) -> None:
        """Add one submit; ``status`` is the HTTP status it was answered with."""
        fields = sorted(str(k) for k in body) if isinstance(body, dict) else []
        prompt = body.get("prompt") if isinstance(body, dict) else None
        entry = {
            "request_id": request_id,
            "model_id": model_id,
            "received_at": datetime.now(tz=UTC).isoformat(),
            "fields": fields,
            "images": {name: image.log_entry() for name, image in images.items()},
            "prompt_chars": len(prompt) if isinstance(prompt, str) else None,
            "refused": request_id is None,
            "status": status,
            "dialect": dialect,
            "shots": list(shots or []),
            "elements": [[image.log_entry() for image in images] for images in elements or []],
            "voices": voices,
        }
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        """A copy of every entry, oldest first."""
        with self._lock:
            return copy.deepcopy(self._entries)
