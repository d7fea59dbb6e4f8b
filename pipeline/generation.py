"""What one generation request asks for, independent of any provider's wire format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pipeline.pricing import Tier

ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
MIN_DURATION: Final = 3
MAX_DURATION: Final = 15
MAX_SHOTS: Final = 6
MAX_PROMPT_CHARS: Final = 2500


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

    @property
    def mode(self) -> str:
        """``image-to-video`` when the request starts from an image, else ``text-to-video``."""
        return "image-to-video" if self.start_image_url else "text-to-video"

    @property
    def model_id(self) -> str:
        """The RunComfy model id, e.g. ``kling/kling-3.0/pro/text-to-video``."""
        return f"kling/kling-3.0/{self.tier.value}/{self.mode}"
