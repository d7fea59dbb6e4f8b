"""Subtitle cues from dialogue lines, and the SRT text format (write and read).

A line's cue starts when its share of the shot starts and stays on screen only as long as it
takes to read (:data:`READING_CPS`, between :data:`MIN_CUE_S` and :data:`MAX_CUE_S`): a short line
in a long shot no longer lingers, and a line too long to read in :data:`MAX_CUE_S` is split at
word boundaries into several cues.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Cue(BaseModel):
    """One subtitle in master time (seconds)."""

    model_config = ConfigDict(frozen=True)

    start_s: float = Field(ge=0)
    end_s: float
    text: str

    @model_validator(mode="after")
    def _ordered(self) -> Cue:
        if self.end_s <= self.start_s:
            raise ValueError(f"cue ends ({self.end_s}) before it starts ({self.start_s})")
        return self


#: Reading speed: characters a viewer reads per second (the common subtitling guideline).
READING_CPS = 17.0
#: No cue is shorter than this (unless its share of the shot is) nor longer than the maximum.
MIN_CUE_S = 1.0
MAX_CUE_S = 7.0
#: The most text one cue holds: what can be read in :data:`MAX_CUE_S`.
MAX_CUE_CHARS = math.floor(MAX_CUE_S * READING_CPS)

#: ISO 639-1 (the script's ``language``) to ISO 639-2/T, the code an MP4 track carries: the
#: MP4 ``mdhd`` language field packs ISO 639-2/T (Apple QTFF, "Language list atom"), so Chinese
#: is ``zho``, not the bibliographic ``chi``.
ISO_639_2T = {"en": "eng", "zh": "zho", "ja": "jpn", "ko": "kor", "es": "spa"}
#: ISO 639-2's "undetermined": what a track without a known language says.
UNDETERMINED = "und"


class DialogueLine(BaseModel):
    """A line as the script has it: who speaks, and what."""

    model_config = ConfigDict(frozen=True)

    speaker: str = ""
    line: str


class ShotTiming(BaseModel):
    """A shot placed in the master: where it starts, how long it lasts, its dialogue in order."""

    model_config = ConfigDict(frozen=True)

    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    lines: tuple[DialogueLine, ...] = ()


def cue_text(line: DialogueLine) -> str:
    """The subtitle text of a line: ``Speaker: line`` (just the line when nobody is named)."""
    speaker = line.speaker.strip()
    text = " ".join(line.line.split())
    return f"{speaker[:1].upper()}{speaker[1:]}: {text}" if speaker else text


def reading_seconds(text: str) -> float:
    """How long ``text`` should stay on screen: its reading time, within [1 s, 7 s]."""
    return min(MAX_CUE_S, max(MIN_CUE_S, len(text) / READING_CPS))


def split_text(text: str, max_chars: int = MAX_CUE_CHARS) -> list[str]:
    """``text`` in as few chunks of at most ``max_chars`` as it needs, split between words and
    balanced in length (a single word longer than that stays whole)."""
    words = text.split()
    if len(text) <= max_chars or len(words) < 2:
        return [text]
    width = math.ceil(len(text) / math.ceil(len(text) / max_chars))
    chunks: list[str] = []
    current = ""
    for word in words:
        joined = f"{current} {word}" if current else word
        # Balanced chunks, but never one over the hard limit.
        if current and (len(joined) > max_chars or len(current) >= width):
            chunks.append(current)
            joined = word
        current = joined
    chunks.append(current)
    return chunks


def line_cues(text: str, start_s: float, end_s: float) -> list[Cue]:
    """Cues showing ``text`` within [``start_s``, ``end_s``]: split to be readable in 7 s each,
    each chunk's share of the time proportional to its length, and each shown only as long as
    it takes to read (:func:`reading_seconds`)."""
    chunks = split_text(text)
    total = sum(len(c) for c in chunks)
    cues: list[Cue] = []
    done = 0
    at = start_s
    for chunk in chunks:
        done += len(chunk)
        # Cumulative shares, so rounding never pushes a chunk past the end of the slot.
        share_end = start_s + (end_s - start_s) * done / total
        cues.append(Cue(start_s=at, end_s=min(share_end, at + reading_seconds(chunk)), text=chunk))
        at = share_end
    return cues


def cues_for_shots(shots: Sequence[ShotTiming]) -> list[Cue]:
    """Cues for every dialogue line, each shot's time shared among its lines in speaking order.

    A line's share is proportional to its length in characters, since longer lines take longer to
    say and to read; the shares tile the shot without gaps or overlaps, and within its share a
    line is shown as :func:`line_cues` says (starting with the share, for its reading time).

    Example::

        cues_for_shots([ShotTiming(start_s=4, duration_s=4, lines=(DialogueLine(line="Hi"),))])
        # [Cue(start_s=4.0, end_s=5.0, text="Hi")]: one second is enough to read "Hi"
    """
    cues: list[Cue] = []
    for shot in shots:
        lines = [line for line in shot.lines if line.line.strip()]
        if not lines:
            continue
        texts = [cue_text(line) for line in lines]
        weights = [len(line.line.strip()) for line in lines]
        total = sum(weights)
        at = shot.start_s
        done = 0
        for text, weight in zip(texts, weights, strict=True):
            done += weight
            # Cumulative shares, so rounding never leaves a gap and the last share ends on the shot.
            end = shot.start_s + shot.duration_s * done / total
            cues += line_cues(text, at, end)
            at = end
    return cues


def track_language(languages: Iterable[str | None]) -> str:
    """The ISO 639-2/T code of a subtitle track whose lines are in ``languages`` (ISO 639-1):
    the most frequent one (the first on a tie), ``und`` when none is known."""
    known = [ISO_639_2T[code] for code in languages if code in ISO_639_2T]
    return Counter(known).most_common(1)[0][0] if known else UNDETERMINED


#: Invisible, and enough to keep a character sequence from being read as markup or timing.
ZWSP = "\u200b"
#: What SRT readers and ffmpeg's SRT → ASS → mov_text path would not show as written: a timing
#: arrow (a cue line with ``-->`` reads as a new cue's timing), HTML-style tags (``<b>``, ``</i>``,
#: ``<font …>`` become styling or vanish), ASS override blocks (``{\an8}`` moves the line, other
#: ``{\…}`` are dropped), MicroDVD styles (``{Y:i}``) and ASS escapes (``\N``, ``\n``, ``\h``).
_MARKUP = re.compile(r"(-->)|(<)(?=/?[A-Za-z0-9_/ ])|(\{)(?=\\|[CcFfoPSsYy]:)|(\\)(?=[nNh])")


def escape_cue_text(text: str) -> str:
    r"""``text`` as SRT cue text that every reader shows as written (markup neutralised).

    A zero-width space goes inside each sequence a reader would interpret, so nothing visible
    changes (see ffmpeg's ``libavcodec/htmlsubtitles.c``: a tag name with any character other
    than ASCII letters, digits, ``_`` or ``/`` is printed, and only ``{\`` opens an override).
    """

    def neutralise(match: re.Match[str]) -> str:
        token = match.group(0)
        return token[:-1] + ZWSP + token[-1] if token == "-->" else token + ZWSP

    return _MARKUP.sub(neutralise, text)


def unescape_cue_text(text: str) -> str:
    """The inverse of :func:`escape_cue_text`: the zero-width spaces it inserted removed."""
    return re.sub(r"--\u200b>|([<{\\])\u200b", lambda m: "-->" if m.group(1) is None else m.group(1), text)


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SRT text for ``cues`` (numbered from 1, millisecond times, blank line between cues).

    Cue text is shown as written: markup is neutralised (:func:`escape_cue_text`) and blank
    lines, which would end the cue early, are dropped.
    """
    blocks = [
        f"{n}\n{_srt_time(c.start_s)} --> {_srt_time(c.end_s)}\n{_cue_body(c.text)}\n"
        for n, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def _cue_body(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(escape_cue_text(line) for line in lines if line) or ZWSP


_TIMING = re.compile(
    r"(\d+):(\d{2}):(\d{2})[,.](\d{3})\s*-->\s*(\d+):(\d{2}):(\d{2})[,.](\d{3})",
)


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    # Whole milliseconds first, one division last: the float equals the one to_srt was given.
    return (int(h) * 3_600_000 + int(m) * 60_000 + int(s) * 1000 + int(ms)) / 1000


def parse_srt(text: str) -> list[Cue]:
    """Cues from SRT text (as ffmpeg extracts an embedded track); the inverse of :func:`to_srt`.

    Text is unescaped (:func:`unescape_cue_text`), so a cue reads back as it was written.
    """
    cues: list[Cue] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            match = _TIMING.search(line)
            if match:
                g = match.groups()
                cues.append(
                    Cue(
                        start_s=_seconds(*g[:4]),
                        end_s=_seconds(*g[4:]),
                        text=unescape_cue_text("\n".join(lines[i + 1 :]).strip()),
                    )
                )
                break
    return cues
