"""How long a Kling 3.0 generation is expected to take: one model for the poller and the sandbox.

The numbers are estimates of the hosted service (queue wait plus a render time that grows with
the clip's duration and tier), to be recalibrated from real runs; the poller only uses them to
decide *when to look*, so an error costs a few extra status calls or seconds, never a result.
``scale`` shrinks every duration by one factor so the sandbox and tests run in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pipeline.pricing import Tier

#: Render seconds = base + per_second × clip duration (estimates, per tier).
RENDER_BASE_S: Final[dict[Tier, float]] = {Tier.STANDARD: 30.0, Tier.PRO: 45.0, Tier.K4: 90.0}
RENDER_PER_SECOND_S: Final[dict[Tier, float]] = {Tier.STANDARD: 8.0, Tier.PRO: 12.0, Tier.K4: 30.0}
#: Native audio is generated alongside the picture; it adds a little.
AUDIO_FACTOR: Final = 1.1
QUEUE_BASE_S: Final = 5.0
#: Expected wait per request ahead of ours in the queue.
QUEUE_SLOT_S: Final = 20.0


@dataclass(frozen=True)
class LatencyModel:
    """Expected queue wait and render time, all multiplied by ``scale``."""

    scale: float = 1.0
    render_base_s: dict[Tier, float] = field(default_factory=lambda: dict(RENDER_BASE_S))
    render_per_second_s: dict[Tier, float] = field(default_factory=lambda: dict(RENDER_PER_SECOND_S))
    audio_factor: float = AUDIO_FACTOR
    queue_base_s: float = QUEUE_BASE_S
    queue_slot_s: float = QUEUE_SLOT_S

    def render_s(self, tier: Tier, duration: int, audio: bool) -> float:
        """Expected render time of one clip, once it left the queue."""
        seconds = self.render_base_s[tier] + self.render_per_second_s[tier] * duration
        return seconds * (self.audio_factor if audio else 1.0) * self.scale

    def queue_s(self, queue_position: int | None) -> float:
        """Expected wait in the queue at ``queue_position`` (1 = next), or the base wait."""
        ahead = max((queue_position or 1) - 1, 0)
        return (self.queue_base_s + self.queue_slot_s * ahead) * self.scale

    def total_s(self, tier: Tier, duration: int, audio: bool, queue_position: int | None = None) -> float:
        """Expected time from submit to completion."""
        return self.queue_s(queue_position) + self.render_s(tier, duration, audio)
