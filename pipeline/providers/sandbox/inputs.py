"""Validating a submit body the way the Model API does: a 422 with a ``detail`` list.

Both spellings of the unverified image fields are accepted (``start_image_url`` / ``image_url``,
``end_image_url`` / ``tail_image_url``) so that either adapter setting works against the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pipeline.generation import ASPECT_RATIOS, MAX_DURATION, MAX_PROMPT_CHARS, MIN_DURATION
from pipeline.pricing import Tier

MODES: Final = ("text-to-video", "image-to-video")
START_IMAGE_FIELDS: Final = ("start_image_url", "image_url")
END_IMAGE_FIELDS: Final = ("end_image_url", "tail_image_url")


@dataclass(frozen=True)
class KlingInput:
    """A validated submit body."""

    tier: Tier
    mode: str
    prompt: str
    duration: int
    aspect_ratio: str
    cfg_scale: float
    generate_audio: bool
    negative_prompt: str | None
    seed: int | None
    start_image_url: str | None
    end_image_url: str | None
    #: A native storyboard (fal ``multi_prompt``, Kling ``multi_prompt``): (prompt, seconds) per
    #: shot, rendered as labelled parts of the clip with those lengths. Empty: one prose prompt.
    shots: tuple[tuple[str, int], ...] = ()
    #: Native elements: (name, image URLs or data URIs) each, shown in the frames of the shots
    #: that mention the element.
    elements: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: Which API dialect accepted the request (``runcomfy``, ``fal``, ``kling``): its price table.
    dialect: str = "runcomfy"


def parse_model_id(model_id: str) -> tuple[Tier, str] | None:
    """(tier, mode) of ``kling/kling-3.0/{tier}/{mode}``, or None for an unknown model."""
    parts = model_id.strip("/").split("/")
    if len(parts) != 4 or parts[:2] != ["kling", "kling-3.0"] or parts[3] not in MODES:
        return None
    try:
        return Tier(parts[2]), parts[3]
    except ValueError:
        return None


def _problem(field: str, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": msg, "type": kind}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_input(tier: Tier, mode: str, body: object) -> tuple[KlingInput | None, list[dict[str, Any]]]:
    """The validated input, or the list of problems (all of them, not just the first)."""
    if not isinstance(body, dict):
        return None, [{"loc": ["body"], "msg": "body must be a JSON object", "type": "type_error"}]
    problems: list[dict[str, Any]] = []
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(_problem("prompt", "field required: a non-empty string", "missing"))
    elif len(prompt) > MAX_PROMPT_CHARS:
        problems.append(_problem("prompt", f"at most {MAX_PROMPT_CHARS} characters", "too_long"))
    duration = body.get("duration", 5)
    if not _is_int(duration) or not MIN_DURATION <= duration <= MAX_DURATION:
        problems.append(
            _problem("duration", f"an integer from {MIN_DURATION} to {MAX_DURATION}", "range_error")
        )
    aspect = body.get("aspect_ratio", "16:9")
    if aspect not in ASPECT_RATIOS:
        problems.append(_problem("aspect_ratio", f"one of {', '.join(ASPECT_RATIOS)}", "enum"))
    cfg = body.get("cfg_scale", 0.5)
    if isinstance(cfg, bool) or not isinstance(cfg, int | float) or not 0.0 <= cfg <= 1.0:
        problems.append(_problem("cfg_scale", "a number from 0 to 1", "range_error"))
    audio = body.get("generate_audio", False)
    if not isinstance(audio, bool):
        problems.append(_problem("generate_audio", "a boolean", "type_error"))
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or seed < 0):
        problems.append(_problem("seed", "a non-negative integer", "type_error"))
    negative = body.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        problems.append(_problem("negative_prompt", "a string", "type_error"))
    start = next((body[f] for f in START_IMAGE_FIELDS if body.get(f)), None)
    end = next((body[f] for f in END_IMAGE_FIELDS if body.get(f)), None)
    for field, value in (("start_image_url", start), ("end_image_url", end)):
        if value is not None and not isinstance(value, str):
            problems.append(_problem(field, "a URL string", "type_error"))
    if mode == "image-to-video" and not start:
        problems.append(_problem("start_image_url", "field required for image-to-video", "missing"))
    if problems:
        return None, problems
    return (
        KlingInput(
            tier=tier,
            mode=mode,
            prompt=str(prompt),
            duration=int(duration),
            aspect_ratio=str(aspect),
            cfg_scale=float(cfg),
            generate_audio=bool(audio),
            negative_prompt=negative,
            seed=seed,
            start_image_url=start if mode == "image-to-video" else None,
            end_image_url=end if mode == "image-to-video" else None,
        ),
        [],
    )
