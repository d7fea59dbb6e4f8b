"""The render script (YAML, version 1) as pydantic models.

Field names and meanings are fixed by ``shared/docs/script-format.md``; defaults follow it.
Models are strict (no silent coercion of ``"4"`` into ``4``) and forbid unknown keys; the loader
(:mod:`pipeline.script.loader`) turns validation errors into ``FILE:LINE: path: message``.
"""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from pipeline.generation import ASPECT_RATIOS
from pipeline.pricing import Tier
from pipeline.script.money import Usd
from pipeline.script.yaml_source import brief

AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"]
assert set(ASPECT_RATIOS) == set(typing.get_args(AspectRatio))  # one list, checked at import

Framing = Literal["extreme-wide", "wide", "medium", "close-up", "extreme-close-up"]
Angle = Literal["eye-level", "low", "high", "overhead", "dutch"]
Language = Literal["en", "zh", "ja", "ko", "es"]
Continuity = Literal["chain", "independent"]
DraftTier = Literal["standard", "pro", "none"]
FinalTier = Literal["standard", "pro", "4k"]
Select = Literal["auto", "manual", "all"]
Transition = Literal["cut", "crossfade"]
ProviderName = Literal["runcomfy", "fal", "kling", "sandbox"]

NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
ELEMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _between(lo: float, hi: float) -> AfterValidator:
    """A validator with the contract's wording: ``must be between LO and HI (got X)``."""

    def check(value: Any) -> Any:
        if not lo <= value <= hi:
            raise PydanticCustomError(
                "between", "must be between {lo} and {hi} (got {got})", {"lo": lo, "hi": hi, "got": value}
            )
        return value

    return AfterValidator(check)


def _matching(pattern: re.Pattern[str], expected: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise PydanticCustomError(
                "pattern", "must be {expected} (got {got})", {"expected": expected, "got": brief(value)}
            )
        return value

    return AfterValidator(check)


def _non_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty", {})
    return value


NonBlank = Annotated[str, AfterValidator(_non_blank)]
Identifier = Annotated[str, _matching(ID_RE, "letters, digits, '-' or '_', starting with a letter or digit")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GenerationSettings(_Strict):
    """The keys of ``defaults``, overridable per narrative and per variant (None = not set)."""

    aspect_ratio: AspectRatio | None = None
    audio: bool | None = None
    negative_prompt: str | None = None
    cfg_scale: Annotated[float, _between(0.0, 1.0)] | None = None
    style: str | None = None
    seed: Annotated[int, _between(0, 2**32 - 1)] | None = None


GENERATION_KEYS: tuple[str, ...] = tuple(GenerationSettings.model_fields)

#: The contract's defaults for every generation setting.
BASE_SETTINGS: dict[str, Any] = {
    "aspect_ratio": "16:9",
    "audio": False,
    "negative_prompt": None,
    "cfg_scale": 0.5,
    "style": None,
    "seed": None,
}


class Element(_Strict):
    """A named subject, referenced in any text as ``@name``."""

    description: NonBlank
    images: list[str] = Field(default_factory=list)
    voice: str | None = None


class DialogueLine(_Strict):
    """One spoken line of a shot."""

    speaker: NonBlank
    line: NonBlank
    language: Language = "en"
    tone: str | None = None


class Shot(_Strict):
    """One shot of a narrative: whole seconds, an action, optional camera, dialogue, text, sound."""

    duration: Annotated[int, _between(1, 60)]
    framing: Framing | None = None
    angle: Angle | None = None
    camera: str | None = None
    action: NonBlank
    dialogue: list[DialogueLine] = Field(default_factory=list)
    text: str | None = None
    sound: str | None = None


class Narrative(GenerationSettings):
    """One narrative: a list of shots that becomes one stitched master per variant."""

    id: Identifier
    title: str | None = None
    start_image: str | None = None
    end_image: str | None = None
    continuity: Continuity = "chain"
    shots: Annotated[list[Shot], Field(min_length=1)]


class Variant(_Strict):
    """An A/B variant: a set of overrides of the generation settings."""

    id: Identifier
    overrides: GenerationSettings = Field(default_factory=GenerationSettings)


class Budget(_Strict):
    """Money and passes: a hard cap, the draft and final tiers, how finals are chosen."""

    #: Finite, in whole cents, over 0 and at most :data:`pipeline.script.money.MAX_USD`.
    limit_usd: Usd
    draft_tier: DraftTier = "standard"
    final_tier: FinalTier = "pro"
    draft_audio: bool = False
    finals: Annotated[int, Field(ge=0)] | None = None
    select: Select = "all"

    @property
    def draft(self) -> Tier | None:
        """The draft tier, or None when there is no draft pass."""
        return None if self.draft_tier == "none" else Tier(self.draft_tier)

    @property
    def final(self) -> Tier:
        """The requested final tier."""
        return Tier(self.final_tier)

    @model_validator(mode="after")
    def _drafts_needed_to_select(self) -> Budget:
        if self.draft_tier == "none" and self.select != "all":
            raise PydanticCustomError(
                "select_without_drafts",
                "{select} chooses among drafts, but draft_tier is none (use select: all)",
                {"select": repr(self.select), "field": "select"},
            )
        return self


class Output(_Strict):
    """How masters are assembled and where they are archived."""

    transition: Transition = "cut"
    crossfade_seconds: Annotated[float, _between(0.1, 2.0)] = 0.5
    loudness_lufs: Annotated[float, _between(-70.0, -5.0)] | None = -16.0
    subtitles: bool | None = None  # None: true when any dialogue exists
    archive: NonBlank = "./renders"


def _cron(value: str) -> str:
    from cronsim import CronSim, CronSimError  # Prefect's own cron parser

    try:
        CronSim(value, datetime.now(UTC))
    except CronSimError as exc:
        raise PydanticCustomError(
            "cron", "not a valid cron expression: {reason}", {"reason": str(exc)}
        ) from exc
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PydanticCustomError(
            "timezone",
            "unknown time zone {got} (expected an IANA name such as Europe/Paris)",
            {"got": repr(value)},
        ) from exc
    return value


class Schedule(_Strict):
    """When a deployed script renders: a cron expression in a time zone."""

    cron: Annotated[str, AfterValidator(_cron)]
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"


class Script(_Strict):
    """A whole render script."""

    version: Literal[1]
    name: Annotated[str, _matching(NAME_RE, "lowercase letters, digits and single '-'")]
    provider: ProviderName | None = None
    defaults: GenerationSettings = Field(default_factory=GenerationSettings)
    elements: dict[str, Element] = Field(default_factory=dict)
    narratives: Annotated[list[Narrative], Field(min_length=1)]
    variants: list[Variant] = Field(default_factory=lambda: [Variant(id="default")])
    budget: Budget
    output: Output = Field(default_factory=Output)
    schedule: Schedule | None = None

    @property
    def has_dialogue(self) -> bool:
        """Whether any shot has a dialogue line."""
        return any(shot.dialogue for n in self.narratives for shot in n.shots)

    @property
    def subtitles(self) -> bool:
        """Whether masters get subtitles (default: when any dialogue exists)."""
        return self.has_dialogue if self.output.subtitles is None else self.output.subtitles

    @property
    def finals_requested(self) -> int:
        """How many variants the script asks to finish (default: all)."""
        return len(self.variants) if self.budget.finals is None else self.budget.finals

    def settings_for(self, narrative: Narrative, variant: Variant) -> dict[str, Any]:
        """Effective generation settings: contract defaults ← defaults ← narrative ← variant."""
        merged = dict(BASE_SETTINGS)
        for layer in (self.defaults, narrative, variant.overrides):
            merged.update({k: getattr(layer, k) for k in GENERATION_KEYS if k in layer.model_fields_set})
        return merged
