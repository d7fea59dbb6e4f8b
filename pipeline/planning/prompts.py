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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.errors import PromptTooLong
from pipeline.generation import MAX_PROMPT_CHARS, MENTION_RE
from pipeline.planning.segments import Segment
from pipeline.script.model import ELEMENT_RE, Shot

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


def compile_shot(
    shot: Shot, number: int, seconds: int, part: int, parts: int, lines: Sequence[int], mentions: _Mentions
) -> str:
    """One shot (or part of one) as prompt text."""
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
    return f"{_header(shot, number, seconds, part, parts)}: {' '.join(body)}"


_SPACES = re.compile(r"[ \t]+")


def compile_prompt(
    shots: Sequence[Shot],
    segment: Segment,
    descriptions: Mapping[str, str],
    style: str | None,
    context: PromptContext,
) -> str:
    """The multi-shot prompt of ``segment`` (shots of its narrative), ending with the style.

    Raises PromptTooLong naming the narrative, variant, segment and heaviest shot.
    """
    mentions = _Mentions(descriptions)
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
