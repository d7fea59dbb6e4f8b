"""What one generation request asks for, independent of any provider's wire format."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pipeline.pricing import Tier

ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
MIN_DURATION: Final = 3
MAX_DURATION: Final = 15
MAX_SHOTS: Final = 6
MAX_PROMPT_CHARS: Final = 2500


#: ``@name`` as a script writes an element mention (kept in :attr:`ShotPrompt.prompt`).
MENTION_RE: Final = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9_-]*)")


@dataclass(frozen=True)
class ShotPrompt:
    """One shot of a native storyboard (``multi_prompt``): its own prompt and whole seconds.

    Element mentions stay as the script wrote them (``@mara``): each provider adapter rewrites
    them the way its API references elements (:func:`replace_mentions`).
    """

    prompt: str
    duration: int


@dataclass(frozen=True)
class ElementRef:
    """An element (a character or object kept the same across shots) sent to a provider natively.

    ``image_urls`` are provider-fetchable forms of the element's images (filled at run time like
    the start image; the plan shows source paths). ``voice`` is the script's voice file (a local
    path or URL) or, once the provider created one, its voice id (``voice_id``).
    """

    name: str
    description: str
    image_urls: tuple[str, ...] = ()
    voice: str | None = None
    voice_id: str | None = None


def replace_mentions(text: str, name_for: Callable[[str], str]) -> str:
    """``text`` with every ``@name`` mention replaced by ``name_for(name)``."""
    return MENTION_RE.sub(lambda m: name_for(m.group(1)), text)


@dataclass(frozen=True)
class GenerationSpec:
    """One Kling 3.0 request: what a provider adapter turns into its own request body.

    Image inputs are URLs the provider can fetch (public HTTPS, or the sandbox's own uploads);
    turning local files into such URLs happens before a spec is built.
    """

    tier: Tier
    prompt: str
    duration: int
    aspect_ratio: str = "16:9"
    generate_audio: bool = False
    negative_prompt: str | None = None
    cfg_scale: float = 0.5
    seed: int | None = None
    start_image_url: str | None = None
    end_image_url: str | None = None
    #: The native storyboard, one entry per shot, durations summing to ``duration``. Empty
    #: when the request is sent as one prose ``prompt`` (the provider has no storyboard for
    #: this mode, or the request has one shot).
    shots: tuple[ShotPrompt, ...] = ()
    #: Elements sent natively (images, voice), in the order the request mentions them. Empty
    #: when the provider takes elements only as the descriptions already in ``prompt``.
    elements: tuple[ElementRef, ...] = ()
    #: Our own id for this submit (job key and attempt), for providers that take a client-side
    #: task id (Kling's ``external_task_id``) so that a submit whose answer was lost can be looked
    #: up instead of becoming unknown. Not part of the job's identity.
    external_id: str | None = None

    @property
    def mode(self) -> str:
        """``image-to-video`` when the request starts from an image, else ``text-to-video``."""
        return "image-to-video" if self.start_image_url else "text-to-video"

    @property
    def model_id(self) -> str:
        """The RunComfy model id, e.g. ``kling/kling-3.0/pro/text-to-video``."""
        return f"kling/kling-3.0/{self.tier.value}/{self.mode}"
