"""What each provider can do with a Kling 3.0 request, and where its prices were read.

The planner compiles every request for one provider from this table: a native storyboard
(``multi_prompt``) where :attr:`Capabilities.storyboard_modes` covers the request's mode, element
images where :attr:`Capabilities.element_modes` does, voices where :attr:`Capabilities.voices`;
the prose prompt with descriptions otherwise. ``klingflow plan --compare`` says from it
what a provider would leave out.

Facts and their sources (also pinned by the contract tests):

- RunComfy: one ``prompt`` string, start/end image, no elements or voices; prices from
  RunComfy's model pages (the table in :mod:`pipeline.pricing`).
- fal.ai: ``fal-ai/kling-video/v3/{standard,pro}/{text-to-video,image-to-video}``: ``multi_prompt``
  (1–6 shots, durations summing to ``duration``) on both modes, ``elements`` on image-to-video,
  ``voice_ids`` (created with ``fal-ai/kling-video/create-voice``), ``end_image_url`` on
  image-to-video; $0.084/$0.126/$0.154 (standard: audio off / on / voice control) and
  $0.112/$0.168/$0.196 (pro), read on the model pages (standard: the text-to-video ``llms.txt``;
  pro: https://fal.ai/models/fal-ai/kling-video/v3/pro/image-to-video/playground, "$0.112 (audio
  off) or $0.168 (audio on), if voice control is used … $0.196").
- Kling's own API (``model_name: kling-v3``): ``multi_shot`` + ``multi_prompt`` (≤ 6 shots, each
  prompt ≤ 512 characters) on text2video and image2video, ``image_tail`` (end image),
  ``external_task_id``; per the Vercel AI SDK's Kling provider (``vercel/ai``
  ``packages/klingai/src/klingai-video-model-options.ts``). Elements go natively on image2video
  only: the adapter creates each one (free) through ``/v1/general/advanced-custom-elements`` and
  sends ``element_list`` ids (≤ 3 a request; more go as descriptions); on text2video they go as
  descriptions. ``voice_list`` takes ids of voices created beforehand (not done by klingflow) and
  cannot go with ``element_list``: voices are dropped. Kling sells prepaid resource units,
  not USD per second: its table here is an assumption (fal's list prices).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from typing import Final

from pipeline.errors import ConfigError
from pipeline.pricing import PRICE_TABLES, Tier, TierPrice

TEXT_TO_VIDEO: Final = "text-to-video"
IMAGE_TO_VIDEO: Final = "image-to-video"
BOTH_MODES: Final = frozenset({TEXT_TO_VIDEO, IMAGE_TO_VIDEO})


@dataclass(frozen=True)
class Capabilities:
    """One provider's Kling 3.0 features and prices (see the module docstring for sources)."""

    name: str
    #: Modes in which a multi-shot request goes as a native storyboard (``multi_prompt``).
    storyboard_modes: frozenset[str]
    #: Most shots in one native storyboard.
    max_shots: int
    #: Element reference images sent natively (in the modes of ``element_modes``).
    elements: bool
    voices: bool
    end_image: bool
    tiers: frozenset[Tier]
    audio: bool
    seed: bool
    #: A submit can be repeated or looked up safely (a client-side task id): never *unknown*.
    idempotent_submit: bool
    prices: dict[Tier, TierPrice]
    prices_read_on: datetime.date
    #: Where the prices (and the facts above) were read.
    source: str
    #: Modes in which element images go natively (empty without elements).
    element_modes: frozenset[str] = frozenset()
    #: Characters allowed in one shot's prompt of a storyboard (``None``: only the whole limit).
    max_shot_prompt_chars: int | None = None
    #: Characters allowed in the whole prompt.
    max_prompt_chars: int = 2500
    #: Voices one request may use.
    max_voices: int = 0
    #: Whether element images and voices may go in the same request.
    voices_with_elements: bool = True
    #: Whether the prices are the provider's published USD rates (False: an assumption).
    prices_published: bool = True
    #: Notes for ``plan --compare`` and the README (assumptions, open facts).
    notes: tuple[str, ...] = field(default=())


_RUNCOMFY = Capabilities(
    name="runcomfy",
    storyboard_modes=frozenset(),
    max_shots=1,
    elements=False,
    voices=False,
    end_image=True,
    tiers=frozenset(Tier),
    audio=True,
    seed=True,
    idempotent_submit=False,
    prices=PRICE_TABLES["runcomfy"],
    prices_read_on=datetime.date(2026, 11, 1),
    source="https://www.runcomfy.com/models/kling/kling-3.0/pro/text-to-video",
)

CAPABILITIES: dict[str, Capabilities] = {
    "runcomfy": _RUNCOMFY,
    # The sandbox speaks RunComfy's API and bills by its table.
    "sandbox": replace(_RUNCOMFY, name="sandbox", source="pipeline/providers/sandbox (RunComfy's table)"),
    "fal": Capabilities(
        name="fal",
        storyboard_modes=BOTH_MODES,
        max_shots=6,
        elements=True,
        element_modes=frozenset({IMAGE_TO_VIDEO}),
        voices=True,
        max_voices=2,
        end_image=True,
        tiers=frozenset({Tier.STANDARD, Tier.PRO}),
        audio=True,
        seed=False,
        idempotent_submit=False,
        prices=PRICE_TABLES["fal"],
        prices_read_on=datetime.date(2026, 11, 30),
        source="https://fal.ai/models/fal-ai/kling-video/v3/standard/text-to-video/llms.txt",
    ),
    "kling": Capabilities(
        name="kling",
        storyboard_modes=BOTH_MODES,
        max_shots=6,
        max_shot_prompt_chars=512,
        # Elements are created through the element API and sent by id on image2video
        # (pipeline.providers.kling_elements); voice_list takes ids of voices klingflow does not
        # create, and cannot go with element_list: voices are dropped.
        elements=True,
        element_modes=frozenset({IMAGE_TO_VIDEO}),
        voices=False,
        voices_with_elements=False,
        end_image=True,
        tiers=frozenset({Tier.STANDARD, Tier.PRO}),
        audio=True,
        seed=False,
        idempotent_submit=True,
        prices=PRICE_TABLES["kling"],
        prices_read_on=datetime.date(2026, 11, 30),
        source="https://app.klingai.com/global/dev/document-api/productBilling/prePaidResourcePackage",
        prices_published=False,
        notes=(
            "prices: assumed equal to fal's per-second list prices (Kling bills prepaid units)",
            "elements: created once per run through Kling's element API (free) and sent by id on "
            "image-to-video (at most 3 a request; the others, and text-to-video, as descriptions)",
            "voices: dropped (voice_list takes ids of voices created beforehand, and not with elements)",
        ),
    ),
}


def capabilities_for(name: str) -> Capabilities:
    """The capabilities of provider ``name``; ConfigError (78) naming the valid ones otherwise."""
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise ConfigError(f"unknown provider {name!r}: use one of {', '.join(CAPABILITIES)}") from None


def storyboard_native(caps: Capabilities, mode: str, shots: int) -> bool:
    """Whether a request of ``shots`` shots in ``mode`` goes as a native storyboard."""
    return shots >= 2 and mode in caps.storyboard_modes and shots <= caps.max_shots


def elements_native(caps: Capabilities, mode: str) -> bool:
    """Whether element images go natively in ``mode``."""
    return caps.elements and mode in caps.element_modes
