"""``plan --json``'s ``body`` per request: the exact JSON the provider's adapter would submit.

Built without network through :func:`pipeline.providers.bodies.body_builder`. Image inputs have
no URLs before a run (they are uploaded or inlined then), so each is given a placeholder URL and
shown in the body as ``{"path": …, "sha256": …}`` (the script's path and the file's digest; an
https image as ``{"url": …, "sha256": null}``; a chained start frame, which exists only once the
previous segment is rendered, as ``{"path": "<last frame of segment N>", "sha256": null}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import KlingflowError
from pipeline.hashing import sha256_file
from pipeline.planning.plan import PlannedRequest
from pipeline.providers.bodies import BodyBuilder, BodyUnavailable, body_builder

_PLACEHOLDER = "https://plan.klingflow.invalid/image/{}.png"


class _Images:
    """Placeholder URLs for a request's images, and what each stands for."""

    def __init__(self, base_dir: Path, digests: dict[str, str | None]) -> None:
        self.base_dir = base_dir
        self.digests = digests
        self.shown: dict[str, dict[str, Any]] = {}

    def _digest(self, path: str) -> str | None:
        if path not in self.digests:
            file = self.base_dir / path
            self.digests[path] = sha256_file(file) if file.is_file() else None
        return self.digests[path]

    def url(self, source: str | None, *, chained_after: int | None = None) -> str | None:
        """A placeholder URL for ``source`` (a script path or https URL), or for a chained frame."""
        if source is None and chained_after is None:
            return None
        placeholder = _PLACEHOLDER.format(len(self.shown))
        if chained_after is not None:
            self.shown[placeholder] = {"path": f"<last frame of segment {chained_after}>", "sha256": None}
        elif source is not None and source.startswith("https://"):
            self.shown[placeholder] = {"url": source, "sha256": None}
        elif source is not None:
            self.shown[placeholder] = {"path": source, "sha256": self._digest(source)}
        return placeholder

    def show(self, value: Any) -> Any:
        """``value`` (a body) with every placeholder replaced by what it stands for."""
        if isinstance(value, str):
            return self.shown.get(value, value)
        if isinstance(value, dict):
            return {k: self.show(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.show(v) for v in value]
        return value


def request_body(
    build: BodyBuilder, request: PlannedRequest, base_dir: Path, digests: dict[str, str | None]
) -> Any:
    """The body ``build`` gives for ``request``, images shown by path and sha256."""
    images = _Images(base_dir, digests)
    start = images.url(request.start_image, chained_after=request.segment - 1 if request.chained else None)
    end = images.url(request.end_image)
    elements = {e.name: [images.url(i) or "" for i in e.images] for e in request.elements}
    return images.show(build(request.spec(start, end, elements)))


def add_bodies(requests: Iterable[dict[str, Any]], planned: Iterable[PlannedRequest], base_dir: Path) -> None:
    """Set ``provider`` and ``body`` on each request of ``plan --json`` (same order as ``planned``).

    When the provider's adapter cannot build bodies here, ``body`` is null and ``body_error``
    says why (the rest of the plan stands).
    """
    digests: dict[str, str | None] = {}
    builders: dict[str, BodyBuilder | BodyUnavailable] = {}
    for item, request in zip(requests, planned, strict=True):
        if request.provider not in builders:
            try:
                builders[request.provider] = body_builder(request.provider)
            except BodyUnavailable as exc:
                builders[request.provider] = exc
        build = builders[request.provider]
        item["provider"] = request.provider
        if isinstance(build, BodyUnavailable):
            item["body"], item["body_error"] = None, str(build)
            continue
        try:
            item["body"] = request_body(build, request, base_dir, digests)
        except KlingflowError as exc:
            # The adapter refuses this request (its own checks): the run's preflight would too.
            item["body"], item["body_error"] = None, str(exc)
