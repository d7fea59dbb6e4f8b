"""The prompt compiler: a segment's shots as one Kling multi-shot prompt.

Example of one compiled shot::

    Shot 1 (4 s, wide, low angle, slow push-in): mara (woman in her 30s, short red hair,
    yellow raincoat) steers the boat through a storm. mara says, in English, excited: "The next
    stop is the Atlantic Ocean!" On-screen text: "ATLANTIC 2026". Sound: howling wind.

Elements are described at their first mention in each prompt (each request stands alone); the
style closes the prompt. Prompts over the provider's limit are refused, naming the shot that
weighs most.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from pipeline.errors import PromptTooLong
from pipeline.generation import MAX_PROMPT_CHARS, MENTION_RE, ShotPrompt
from pipeline.planning.segments import Segment
from pipeline.script.model import ELEMENT_RE, Element, Narrative, Shot

LANGUAGES = {"en": "English", "zh": "Mandarin Chinese", "ja": "Japanese", "ko": "Korean", "es": "Spanish"}
ANGLES = {
    "eye-level": "eye-level",
    "low": "low angle",
    "high": "high angle",
    "overhead": "overhead",
    "dutch": "dutch angle",
}


@dataclass(frozen=True)
class PromptContext:
    """Where a prompt belongs, for messages: narrative position and id, variant id."""

    narrative_index: int
    narrative_id: str
    variant_id: str


class _Mentions:
    """Replaces ``@name`` by ``name (description)`` the first time, ``name`` afterwards."""

    def __init__(self, descriptions: Mapping[str, str]) -> None:
        self.descriptions = descriptions
        self.seen: set[str] = set()

    def name(self, name: str) -> str:
        if name in self.seen or name not in self.descriptions:
            return name
        self.seen.add(name)
        return f"{name} ({self.descriptions[name].strip()})"

    def text(self, text: str) -> str:
        return MENTION_RE.sub(lambda m: self.name(m.group(1)), text)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?…\"'" else f"{text}."


def _header(shot: Shot, number: int, seconds: int, part: int, parts: int) -> str:
    bits = [f"{seconds} s"]
    if shot.framing:
        bits.append(shot.framing)
    if shot.angle:
        bits.append(ANGLES[shot.angle])
    if shot.camera and shot.camera.strip():
        bits.append(shot.camera.strip())
    if part > 0:
        bits.append("continuing from the previous clip")
    return f"Shot {number} ({', '.join(bits)})"


class _KeptMentions(_Mentions):
    """Keeps ``@name`` as written for the elements in ``kept`` (sent natively: the provider's
    adapter rewrites those mentions the way its API references elements); describes the others."""

    def __init__(self, descriptions: Mapping[str, str], kept: Collection[str]) -> None:
        super().__init__(descriptions)
        self.kept = kept

    def name(self, name: str) -> str:
        return f"@{name}" if name in self.kept else super().name(name)


def compile_shot(
    shot: Shot, number: int, seconds: int, part: int, parts: int, lines: Sequence[int], mentions: _Mentions
) -> str:
    """One shot (or part of one) as prompt text."""
    return f"{_header(shot, number, seconds, part, parts)}: {_body(shot, lines, mentions)}"


def _body(shot: Shot, lines: Sequence[int], mentions: _Mentions) -> str:
    body = [_sentence(mentions.text(shot.action))]
    for i in lines:
        line = shot.dialogue[i]
        bare = line.speaker.removeprefix("@")
        speaker = mentions.name(bare) if ELEMENT_RE.fullmatch(bare) else line.speaker.strip()
        how = ", ".join(x for x in (f"in {LANGUAGES[line.language]}", line.tone and line.tone.strip()) if x)
        body.append(f'{speaker} says, {how}: "{mentions.text(line.line).strip()}"')
    if shot.text and shot.text.strip():
        body.append(f'On-screen text: "{shot.text.strip()}".')
    if shot.sound and shot.sound.strip():
        body.append(f"Sound: {_sentence(mentions.text(shot.sound))}")
    return " ".join(body)


def _framing(shot: Shot, part: int) -> str:
    """A storyboard shot's framing, angle, camera (its number and seconds are the API's fields)."""
    bits = [
        b for b in (shot.framing, shot.angle and ANGLES[shot.angle], shot.camera and shot.camera.strip()) if b
    ]
    if part > 0:
        bits.append("continuing from the previous clip")
    return ", ".join(bits)


_SPACES = re.compile(r"[ \t]+")


class _MarkedMentions(_Mentions):
    """Describes every element at its first mention, and marks those in ``kept`` (sent natively)
    as ``@name`` for the provider's adapter to rewrite."""

    def __init__(self, descriptions: Mapping[str, str], kept: Collection[str]) -> None:
        super().__init__(descriptions)
        self.kept = kept

    def name(self, name: str) -> str:
        described = super().name(name)
        return f"@{described}" if name in self.kept else described


def compile_prompt(
    shots: Sequence[Shot],
    segment: Segment,
    descriptions: Mapping[str, str],
    style: str | None,
    context: PromptContext,
    *,
    kept: Collection[str] = (),
) -> str:
    """The multi-shot prompt of ``segment`` (shots of its narrative), ending with the style.

    Elements in ``kept`` (sent natively with images) are mentioned as ``@name``, described at the
    first mention like the others. Raises PromptTooLong naming the narrative, variant, segment
    and heaviest shot.
    """
    mentions = _MarkedMentions(descriptions, kept) if kept else _Mentions(descriptions)
    pieces = [
        compile_shot(shots[p.shot], n, p.seconds, p.part, p.parts, p.lines, mentions)
        for n, p in enumerate(segment.parts, start=1)
    ]
    if style and style.strip():
        pieces.append(f"Style: {_sentence(style)}")
    prompt = _SPACES.sub(" ", "\n".join(pieces))
    if len(prompt) > MAX_PROMPT_CHARS:
        heaviest = max(range(len(segment.parts)), key=lambda i: len(pieces[i]))
        shot_index = segment.parts[heaviest].shot
        raise PromptTooLong(
            f"narrative {context.narrative_id!r}, variant {context.variant_id!r}, segment {segment.index}: "
            f"the prompt would be {len(prompt):,} characters, over the provider's limit of "
            f"{MAX_PROMPT_CHARS:,}; shorten shot {shot_index + 1} ({len(pieces[heaviest]):,} characters: "
            "its action, dialogue, text or sound) or the style",
            narrative_index=context.narrative_index,
            shot_index=shot_index,
        )
    return prompt


def compile_shot_prompts(
    shots: Sequence[Shot],
    segment: Segment,
    descriptions: Mapping[str, str],
    style: str | None,
    context: PromptContext,
    *,
    kept: Collection[str],
    max_chars: int | None,
    provider: str,
) -> tuple[ShotPrompt, ...]:
    """``segment`` as a native storyboard: one prompt per shot part, with its seconds.

    Mentions of the elements in ``kept`` (sent natively) stay ``@name``; every other element is
    described at its first mention in the request, as in the prose prompt. The style closes every shot (each shot is generated from its own prompt). Raises
    PromptTooLong when a shot's prompt is over the provider's per-shot limit ``max_chars``.
    """
    mentions = _KeptMentions(descriptions, kept)
    closing = f" Style: {_sentence(style)}" if style and style.strip() else ""
    out = []
    for p in segment.parts:
        shot = shots[p.shot]
        framing = _framing(shot, p.part)
        body = _body(shot, p.lines, mentions)
        text = _SPACES.sub(
            " ", (f"{framing[:1].upper()}{framing[1:]}: {body}" if framing else body) + closing
        )
        if max_chars is not None and len(text) > max_chars:
            raise PromptTooLong(
                f"narrative {context.narrative_id!r}, variant {context.variant_id!r}, segment {segment.index}: "
                f"shot {p.shot + 1}'s prompt would be {len(text):,} characters, over {provider}'s limit of "
                f"{max_chars:,} per storyboard shot; shorten its action, dialogue, text or sound (or the style)",
                narrative_index=context.narrative_index,
                shot_index=p.shot,
            )
        out.append(ShotPrompt(text, p.seconds))
    return tuple(out)


class PromptCache:
    """Compiles prose prompts once per (narrative, segment, style, elements sent natively):
    variants usually share them."""

    def __init__(self, elements: Mapping[str, Element]) -> None:
        self.descriptions = {name: e.description for name, e in elements.items()}
        self.cache: dict[tuple[int, int, str | None, frozenset[str]], str] = {}

    def get(
        self,
        narrative: Narrative,
        narrative_index: int,
        segment: Segment,
        style: str | None,
        variant: str,
        kept: frozenset[str] = frozenset(),
    ) -> str:
        """The prose prompt of ``segment`` (see :func:`compile_prompt`), compiled once."""
        key = (narrative_index, segment.index, style, kept)
        prompt = self.cache.get(key)
        if prompt is None:
            context = PromptContext(narrative_index, narrative.id, variant)
            prompt = compile_prompt(narrative.shots, segment, self.descriptions, style, context, kept=kept)
            self.cache[key] = prompt
        return prompt
