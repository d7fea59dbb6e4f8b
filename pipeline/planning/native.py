"""What one request sends natively to its provider: storyboard shots, elements, a voice.

Pure. The planner asks :func:`compile_native` for every request; the answer follows the
provider's :class:`~pipeline.capabilities.Capabilities`:

- a native storyboard (one :class:`~pipeline.generation.ShotPrompt` per shot part, with its
  seconds) when the request has ≥ 2 shots and the provider's storyboard covers its mode;
- the elements the request mentions, with their images (source paths: URLs come at run time)
  where the provider takes element images in that mode, and with the voice file of an element
  that speaks in the request where it takes voices (audio on);
- ``drops``: what the provider leaves out compared with the script (``plan --compare``).

The prose prompt (``PlannedRequest.prompt``) is always compiled too: it is what providers without
a storyboard receive, and what the job identity and messages quote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.capabilities import (
    IMAGE_TO_VIDEO,
    TEXT_TO_VIDEO,
    Capabilities,
    elements_native,
    storyboard_native,
)
from pipeline.generation import MENTION_RE, ElementRef, ShotPrompt
from pipeline.planning.prompts import PromptContext, compile_shot_prompts
from pipeline.planning.segments import Segment
from pipeline.script.model import ELEMENT_RE, Element, Shot


@dataclass(frozen=True)
class PlannedElement:
    """An element a request sends natively, as the script gives it (paths, not URLs)."""

    name: str
    description: str
    #: The element's images as written in the script (local paths or https URLs); empty when
    #: only its voice goes natively.
    images: tuple[str, ...] = ()
    #: The element's voice file as written in the script, when the request sends it.
    voice: str | None = None

    def ref(self, image_urls: Sequence[str] = ()) -> ElementRef:
        """The provider-neutral element once its images have URLs (``image_urls``, same order)."""
        return ElementRef(self.name, self.description, tuple(image_urls), self.voice)


@dataclass(frozen=True)
class NativeParts:
    """A request's native parts for one provider."""

    shots: tuple[ShotPrompt, ...] = ()
    elements: tuple[PlannedElement, ...] = ()
    #: A voice is sent: the provider's voice rate applies (with audio).
    voice: bool = False
    drops: tuple[str, ...] = ()

    @property
    def mentioned_natively(self) -> frozenset[str]:
        """Elements sent with images: the prose prompt mentions them as ``@name`` too, so that the
        adapter can reference them the way its API expects (their descriptions stay inlined)."""
        return frozenset(e.name for e in self.elements if e.images)


def request_mode(start_image: str | None, chained: bool) -> str:
    """``image-to-video`` when the request starts from an image (the script's or the previous
    segment's last frame), else ``text-to-video``."""
    return IMAGE_TO_VIDEO if start_image or chained else TEXT_TO_VIDEO


def _qualified(drop: str, mode: str, native_modes: frozenset[str]) -> str:
    """``drop``, naming the mode when the provider does it natively in another mode."""
    return f"{drop} ({mode})" if native_modes else drop


def _speakers(shot: Shot, lines: Sequence[int]) -> list[str]:
    out = []
    for i in lines:
        bare = shot.dialogue[i].speaker.strip().removeprefix("@")
        if ELEMENT_RE.fullmatch(bare):
            out.append(bare)
    return out


def mentioned(
    shots: Sequence[Shot], segment: Segment, elements: Mapping[str, Element]
) -> tuple[list[str], set[str]]:
    """The elements ``segment`` mentions (first-mention order) and those that speak in it."""
    order: list[str] = []
    speaking: set[str] = set()
    for p in segment.parts:
        shot = shots[p.shot]
        texts = [shot.action, shot.sound or "", *(shot.dialogue[i].line for i in p.lines)]
        speakers = _speakers(shot, p.lines)
        speaking.update(speakers)
        names = [m.group(1) for t in texts for m in MENTION_RE.finditer(t)] + speakers
        order.extend(n for n in names if n in elements and n not in order)
    return order, speaking


def compile_native(
    caps: Capabilities,
    shots: Sequence[Shot],
    segment: Segment,
    elements: Mapping[str, Element],
    *,
    style: str | None,
    mode: str,
    audio: bool,
    context: PromptContext,
) -> NativeParts:
    """The native parts of one request for the provider ``caps`` (see the module docstring).

    Raises PromptTooLong when a storyboard shot's prompt is over the provider's per-shot limit.
    """
    names, speaking = mentioned(shots, segment, elements)
    with_images = elements_native(caps, mode)
    drops: list[str] = []
    planned: list[PlannedElement] = []
    voices = 0
    for name in names:
        element = elements[name]
        images = tuple(element.images) if with_images else ()
        if element.images and not with_images:
            drops.append(_qualified("elements: description only", mode, caps.element_modes))
        voice = None
        if element.voice and audio and name in speaking:
            if not caps.voices:
                drops.append("voice: dropped")
            elif images and not caps.voices_with_elements:
                drops.append("voice: dropped (not with element images)")
            elif voices >= caps.max_voices:
                drops.append(f"voice: dropped (over {caps.max_voices} voices in one request)")
            else:
                voice = element.voice
                voices += 1
        if images or voice:
            planned.append(PlannedElement(name, element.description.strip(), images, voice))
    story: tuple[ShotPrompt, ...] = ()
    if storyboard_native(caps, mode, len(segment.parts)):
        story = compile_shot_prompts(
            shots,
            segment,
            {n: e.description for n, e in elements.items()},
            style,
            context,
            # Mentions of elements sent natively stay ``@name`` (the adapter references them); the
            # others are described in words, as in the prose prompt.
            kept=frozenset(e.name for e in planned),
            max_chars=caps.max_shot_prompt_chars,
            provider=caps.name,
        )
    elif len(segment.parts) >= 2:
        drops.append(_qualified("storyboard: prose", mode, caps.storyboard_modes))
    return NativeParts(story, tuple(planned), voices > 0, tuple(dict.fromkeys(drops)))
