"""The render plan: every request of a run, per narrative, variant and pass, with its cost.

Pure: a function of the script alone (no clock, no I/O), so the same script always gives the
same plan, and ``klingflow plan`` shows exactly what ``klingflow run`` will buy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from pipeline.capabilities import capabilities_for
from pipeline.generation import GenerationSpec, ShotPrompt
from pipeline.planning.budget import BudgetDecision, decide_budget
from pipeline.planning.native import PlannedElement, compile_native, request_mode
from pipeline.planning.prompts import PromptCache, PromptContext
from pipeline.planning.segments import Segment, plan_segments
from pipeline.pricing import Tier, provider_rate, provider_request_cost, to_cents
from pipeline.script.model import Script

Pass = Literal["draft", "final"]


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One generation request the run will make (or, when provisional, reserves money for)."""

    narrative: str
    variant: str
    pass_: Pass
    segment: int
    tier: Tier
    duration: int
    audio: bool
    shots: int
    trimmed_seconds: int
    prompt: str
    negative_prompt: str | None
    aspect_ratio: str
    cfg_scale: float
    seed: int | None
    #: The first segment's start image as written in the script (path or https URL).
    start_image: str | None
    #: True when the request starts from the previous segment's last frame (continuity: chain).
    chained: bool
    end_image: str | None
    cost: Decimal
    #: A final reserved for a variant that is only chosen at run time (select auto/manual).
    provisional: bool
    #: Already paid for (the clip library holds its clip): the run takes it for $0.
    reuse: bool = False
    #: The provider this request is compiled and priced for.
    provider: str = "runcomfy"
    #: The native storyboard (≥ 2 shots, where the provider has one for this mode); else empty.
    shot_prompts: tuple[ShotPrompt, ...] = ()
    #: The elements sent natively (images as script paths, voice), in first-mention order.
    elements: tuple[PlannedElement, ...] = ()
    #: A provider voice is used: priced at the provider's voice rate.
    voice: bool = False
    #: What this provider leaves out of this request compared with the script.
    drops: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        """``image-to-video`` when it starts from an image (the script's or a chained frame)."""
        return request_mode(self.start_image, self.chained)

    def spec(
        self,
        start_image_url: str | None = None,
        end_image_url: str | None = None,
        element_image_urls: Mapping[str, Sequence[str]] | None = None,
    ) -> GenerationSpec:
        """The provider-neutral request, once image inputs have URLs.

        ``element_image_urls``: each native element's image URLs by element name (same order as
        its ``images``); an element left out keeps no images (its voice still goes).
        """
        urls = element_image_urls or {}
        return GenerationSpec(
            tier=self.tier,
            prompt=self.prompt,
            duration=self.duration,
            aspect_ratio=self.aspect_ratio,
            generate_audio=self.audio,
            negative_prompt=self.negative_prompt,
            cfg_scale=self.cfg_scale,
            seed=self.seed,
            start_image_url=start_image_url,
            end_image_url=end_image_url,
            shots=self.shot_prompts,
            elements=tuple(e.ref(urls.get(e.name, ())) for e in self.elements),
        )


@dataclass(frozen=True)
class NarrativePlan:
    """A narrative's segments (shared by all its variants and passes)."""

    index: int
    id: str
    continuity: str
    seconds: int
    segments: tuple[Segment, ...]
    #: How long each master of this narrative lasts: its shots, less one crossfade per join.
    master_seconds: float = 0.0


def master_seconds(segments: tuple[Segment, ...], transition: str, crossfade_seconds: float) -> float:
    """A master's scripted length: Σ shots − (segments − 1) × crossfade (format contract)."""
    shots = sum(s.content_seconds for s in segments)
    joins = len(segments) - 1 if transition == "crossfade" else 0
    # Rounded to the microsecond so the JSON shows 101.6, not 101.60000000000001.
    return round(shots - joins * crossfade_seconds, 6)


@dataclass(frozen=True)
class RenderPlan:
    """Everything a run will do and spend."""

    script: str
    variants: tuple[str, ...]
    narratives: tuple[NarrativePlan, ...]
    requests: tuple[PlannedRequest, ...]
    budget: BudgetDecision
    finals_requested: int
    final_tier_requested: Tier
    select: str
    #: Every final request a choice at run time may promote: each variant's finals at the tier
    #: the budget decided (none without one). The run filters these; it never plans again.
    candidate_finals: tuple[PlannedRequest, ...] = ()
    #: The provider every request is compiled and priced for.
    provider: str = "runcomfy"

    @property
    def drops(self) -> tuple[str, ...]:
        """What the provider leaves out of this plan's requests, each once, in order."""
        return tuple(dict.fromkeys(d for r in self.requests for d in r.drops))

    @property
    def total(self) -> Decimal:
        """Exact cost of every planned request."""
        return sum((r.cost for r in self.requests), Decimal(0))

    @property
    def to_spend(self) -> Decimal:
        """Exact cost of the requests this run will buy (those the library holds cost nothing)."""
        return sum((r.cost for r in self.requests if not r.reuse), Decimal(0))

    @property
    def to_spend_cents(self) -> Decimal:
        """What this run will buy, as shown (each request rounded to the cent)."""
        return sum((to_cents(r.cost) for r in self.requests if not r.reuse), Decimal(0))

    @property
    def total_cents(self) -> Decimal:
        """The sum of the requests' costs as shown (each rounded to the cent)."""
        return sum((to_cents(r.cost) for r in self.requests), Decimal(0))

    def cents_for(self, pass_: Pass) -> Decimal:
        """The shown (cent-rounded) cost of one pass."""
        return sum((to_cents(r.cost) for r in self.requests if r.pass_ == pass_), Decimal(0))

    def requests_for(self, pass_: Pass) -> list[PlannedRequest]:
        """The requests of one pass, in plan order."""
        return [r for r in self.requests if r.pass_ == pass_]


def plan_narratives(script: Script) -> tuple[NarrativePlan, ...]:
    """Segment every narrative of ``script``."""
    out = script.output
    plans = []
    for i, n in enumerate(script.narratives):
        segments = plan_segments([s.duration for s in n.shots], [len(s.dialogue) for s in n.shots])
        plans.append(
            NarrativePlan(
                index=i,
                id=n.id,
                continuity=n.continuity,
                seconds=sum(s.duration for s in n.shots),
                segments=segments,
                master_seconds=master_seconds(segments, out.transition, out.crossfade_seconds),
            )
        )
    return tuple(plans)


def charge(amounts: list[Decimal]) -> Decimal:
    """What a set of requests counts against the budget: the larger of their exact sum and the
    sum of their costs rounded to the cent, so that neither the real spend nor the costs shown
    in the plan can pass the limit."""
    return max(sum(amounts, Decimal(0)), sum((to_cents(a) for a in amounts), Decimal(0)))


def build_prompts(script: Script) -> None:
    """Compile every distinct prompt of ``script``; raises PromptTooLong for the first too long."""
    prompts = PromptCache(script.elements)
    for plan, narrative in zip(plan_narratives(script), script.narratives, strict=True):
        for variant in script.variants:
            style = script.settings_for(narrative, variant)["style"]
            for segment in plan.segments:
                prompts.get(narrative, plan.index, segment, style, variant.id)


class RequestBuilder:
    """Builds the requests of one variant and pass of a script (shared by plan and run)."""

    def __init__(
        self, script: Script, narratives: tuple[NarrativePlan, ...] | None = None, provider: str | None = None
    ) -> None:
        self.script = script
        self.narratives = narratives if narratives is not None else plan_narratives(script)
        #: The provider requests are compiled and priced for: given, else the script's, else RunComfy.
        self.provider = provider or (str(script.provider) if script.provider else "runcomfy")
        self.capabilities = capabilities_for(self.provider)
        self.prompts = PromptCache(script.elements)
        self.settings = [[script.settings_for(n, v) for v in script.variants] for n in script.narratives]

    def variant_index(self, variant_id: str) -> int:
        """The position of a variant id among the script's variants."""
        return [v.id for v in self.script.variants].index(variant_id)

    def requests(
        self, variant_index: int, pass_: Pass, tier: Tier, provisional: bool = False
    ) -> list[PlannedRequest]:
        """Every request of ``variant_index`` in ``pass_`` at ``tier``, narrative by narrative."""
        script = self.script
        variant = script.variants[variant_index]
        out = []
        for plan, narrative in zip(self.narratives, script.narratives, strict=True):
            s = self.settings[plan.index][variant_index]
            audio = bool(s["audio"]) and (pass_ == "final" or script.budget.draft_audio)
            last = len(plan.segments) - 1
            for seg in plan.segments:
                start_image = narrative.start_image if seg.index == 0 else None
                chained = seg.index > 0 and narrative.continuity == "chain"
                native = compile_native(
                    self.capabilities,
                    narrative.shots,
                    seg,
                    script.elements,
                    style=s["style"],
                    mode=request_mode(start_image, chained),
                    audio=audio,
                    context=PromptContext(plan.index, narrative.id, variant.id),
                )
                out.append(
                    PlannedRequest(
                        narrative=narrative.id,
                        variant=variant.id,
                        pass_=pass_,
                        segment=seg.index,
                        tier=tier,
                        duration=seg.duration,
                        audio=audio,
                        shots=len(seg.parts),
                        trimmed_seconds=seg.trimmed_seconds,
                        prompt=self.prompts.get(
                            narrative, plan.index, seg, s["style"], variant.id, native.mentioned_natively
                        ),
                        negative_prompt=s["negative_prompt"],
                        aspect_ratio=s["aspect_ratio"],
                        cfg_scale=s["cfg_scale"],
                        seed=s["seed"],
                        start_image=start_image,
                        chained=chained,
                        end_image=narrative.end_image if seg.index == last else None,
                        cost=provider_request_cost(self.provider, tier, seg.duration, audio, native.voice),
                        provisional=provisional,
                        provider=self.provider,
                        shot_prompts=native.shots,
                        elements=native.elements,
                        voice=native.voice,
                        drops=native.drops,
                    )
                )
        return out


#: Which of these requests are already paid for (a clip library holds their clips), in order.
#: It is given each chain whole, segments in order (a chained identity depends on the one before).
PaidCheck = Callable[[Sequence[PlannedRequest]], Sequence[bool]]


def _marked(requests: list[PlannedRequest], paid: PaidCheck | None) -> list[PlannedRequest]:
    """``requests`` with ``reuse`` set where ``paid`` says so."""
    if paid is None:
        return requests
    return [replace(r, reuse=True) if f else r for r, f in zip(requests, paid(requests), strict=True)]


def build_plan(script: Script, paid: PaidCheck | None = None, *, provider: str | None = None) -> RenderPlan:
    """The full plan of ``script``: drafts, then the finals the budget allows.

    Every request is compiled and priced for ``provider`` (else the script's ``provider:``, else
    RunComfy): native storyboard, elements and voice where it takes them (:mod:`.native`).

    With ``paid`` (the clip library's answer), requests already paid for are marked ``reuse``
    and the budget counts only what will be bought. Raises BudgetError (nothing spent) when
    even the cheapest honest plan exceeds the limit, PromptTooLong when a compiled prompt is
    over the provider's limit.
    """
    builder = RequestBuilder(script, provider=provider)
    narratives = builder.narratives
    settings = builder.settings
    budget = script.budget
    draft_tier = budget.draft

    def requests(variant: int, pass_: Pass, tier: Tier, provisional: bool = False) -> list[PlannedRequest]:
        return _marked(builder.requests(variant, pass_, tier, provisional), paid)

    drafts = (
        [r for v in range(len(script.variants)) for r in requests(v, "draft", draft_tier)]
        if draft_tier is not None
        else []
    )
    draft_cost = charge([r.cost for r in drafts if not r.reuse])

    def final_cost(variant_index: int, tier: Tier) -> Decimal:
        # Priced request by request: a provider's voice rate depends on what each one sends.
        return charge([r.cost for r in requests(variant_index, "final", tier) if not r.reuse])

    decision = decide_budget(
        limit=Decimal(str(budget.limit_usd)),
        draft_cost=draft_cost,
        variants=len(script.variants),
        finals=script.finals_requested,
        select=budget.select,
        final_tier=budget.final,
        draft_tier=draft_tier,
        tiers=builder.capabilities.tiers,
        finals_add_audio=not budget.draft_audio and any(s["audio"] for row in settings for s in row),
        final_cost=final_cost,
    )
    finals = (
        [
            r
            for v in decision.final_variants
            for r in requests(v, "final", decision.final_tier, decision.provisional)
        ]
        if decision.final_tier is not None
        else []
    )
    return RenderPlan(
        script=script.name,
        variants=tuple(v.id for v in script.variants),
        narratives=narratives,
        requests=tuple(drafts + finals),
        budget=decision,
        finals_requested=script.finals_requested,
        final_tier_requested=budget.final,
        select=budget.select,
        candidate_finals=tuple(
            r for v in range(len(script.variants)) for r in requests(v, "final", decision.final_tier)
        )
        if decision.final_tier is not None
        else (),
        provider=builder.provider,
    )


def plan_to_dict(plan: RenderPlan) -> dict[str, Any]:
    """The plan as plain JSON data (``klingflow plan --json``).

    ``cost_usd`` of each request is duration × rate rounded to the cent, and ``total_usd`` is
    their sum (so the column adds up); ``*_exact`` fields keep exact amounts as strings.
    """
    trimmed = sum(
        (provider_rate(r.provider, r.tier, r.audio, r.voice) * r.trimmed_seconds for r in plan.requests),
        Decimal(0),
    )
    b = plan.budget
    return {
        "script": plan.script,
        "budget_usd": float(b.limit),
        "total_usd": float(plan.total_cents),
        "total_usd_exact": str(plan.total),
        # What this run will really buy: requests the clip library holds (``reuse``) cost $0.
        "to_spend_usd": float(plan.to_spend_cents),
        "to_spend_usd_exact": str(plan.to_spend),
        "draft_usd": float(plan.cents_for("draft")),
        "final_usd": float(plan.cents_for("final")),
        "remaining_usd": float(b.limit - plan.total_cents),
        "finals": {
            "requested": plan.finals_requested,
            "planned": len(b.final_variants),
            "tier_requested": plan.final_tier_requested.value,
            "tier": b.final_tier.value if b.final_tier else None,
            "select": plan.select,
            "variants": [plan.variants[v] for v in b.final_variants],
            "provisional": b.provisional,
        },
        "degraded": list(b.degraded),
        "trimmed_seconds": sum(r.trimmed_seconds for r in plan.requests),
        "trimmed_usd": float(to_cents(trimmed)),
        "narratives": [
            {
                "id": n.id,
                "continuity": n.continuity,
                "seconds": n.seconds,
                "master_seconds": n.master_seconds,
                "segments": [
                    {
                        "index": s.index,
                        "start": s.start,
                        "duration": s.duration,
                        "content_seconds": s.content_seconds,
                        "trimmed_seconds": s.trimmed_seconds,
                        "parts": [
                            {
                                "shot": p.shot,
                                "seconds": p.seconds,
                                "part": p.part,
                                "parts": p.parts,
                                "lines": list(p.lines),
                            }
                            for p in s.parts
                        ],
                    }
                    for s in n.segments
                ],
            }
            for n in plan.narratives
        ],
        "requests": [request_to_dict(r) for r in plan.requests],
        # Every final a choice at run time may promote (``select: auto``/``manual``), at the
        # decided tier; ``requests`` already holds those the budget reserved for.
        "candidate_finals": [request_to_dict(r) for r in plan.candidate_finals],
    }


def request_to_dict(r: PlannedRequest) -> dict[str, Any]:
    """One planned request as plain JSON data (an item of ``plan --json``'s ``requests``)."""
    return {
        "narrative": r.narrative,
        "variant": r.variant,
        "pass": r.pass_,
        "segment": r.segment,
        "tier": r.tier.value,
        "duration": r.duration,
        "audio": r.audio,
        "shots": r.shots,
        "trimmed_seconds": r.trimmed_seconds,
        "cost_usd": float(to_cents(r.cost)),
        "cost_usd_exact": str(r.cost),
        "provisional": r.provisional,
        "reuse": r.reuse,
        "aspect_ratio": r.aspect_ratio,
        "seed": r.seed,
        "cfg_scale": r.cfg_scale,
        "negative_prompt": r.negative_prompt,
        "start_image": r.start_image,
        "chained": r.chained,
        "end_image": r.end_image,
        "prompt": r.prompt,
        "provider": r.provider,
        "mode": r.mode,
        # The native storyboard (empty: the prose ``prompt`` goes alone); mentions stay ``@name``.
        "multi_prompt": [{"prompt": p.prompt, "duration": p.duration} for p in r.shot_prompts],
        "elements": [
            {"name": e.name, "description": e.description, "images": list(e.images), "voice": e.voice}
            for e in r.elements
        ],
        "voice": r.voice,
        "drops": list(r.drops),
    }
