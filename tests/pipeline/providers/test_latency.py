"""The latency model: queue wait plus a render time growing with duration, tier and audio."""

from __future__ import annotations

import pytest

from pipeline.pricing import Tier
from pipeline.providers.latency import (
    AUDIO_FACTOR,
    QUEUE_BASE_S,
    QUEUE_SLOT_S,
    RENDER_BASE_S,
    RENDER_PER_SECOND_S,
    LatencyModel,
)


@pytest.mark.parametrize("tier", list(Tier))
def test_render_time_is_base_plus_per_second(tier: Tier) -> None:
    model = LatencyModel()
    assert model.render_s(tier, 5, False) == pytest.approx(
        RENDER_BASE_S[tier] + 5 * RENDER_PER_SECOND_S[tier]
    )
    assert model.render_s(tier, 5, True) == pytest.approx(model.render_s(tier, 5, False) * AUDIO_FACTOR)


def test_render_time_grows_with_duration_and_tier() -> None:
    model = LatencyModel()
    assert model.render_s(Tier.STANDARD, 10, False) > model.render_s(Tier.STANDARD, 5, False)
    assert (
        model.render_s(Tier.K4, 5, False)
        > model.render_s(Tier.PRO, 5, False)
        > model.render_s(Tier.STANDARD, 5, False)
    )


def test_queue_wait_by_position() -> None:
    model = LatencyModel()
    assert model.queue_s(None) == QUEUE_BASE_S
    assert model.queue_s(1) == QUEUE_BASE_S
    assert model.queue_s(0) == QUEUE_BASE_S  # never less than the base wait
    assert model.queue_s(4) == QUEUE_BASE_S + 3 * QUEUE_SLOT_S


def test_scale_shrinks_every_duration_and_total_adds_up() -> None:
    full, fast = LatencyModel(), LatencyModel(scale=0.01)
    assert fast.total_s(Tier.PRO, 5, True, 3) == pytest.approx(full.total_s(Tier.PRO, 5, True, 3) * 0.01)
    assert full.total_s(Tier.PRO, 5, True, 3) == pytest.approx(
        full.queue_s(3) + full.render_s(Tier.PRO, 5, True)
    )


def test_models_do_not_share_their_tables() -> None:
    first = LatencyModel()
    first.render_base_s[Tier.STANDARD] = 0.0
    assert LatencyModel().render_base_s[Tier.STANDARD] == RENDER_BASE_S[Tier.STANDARD]
