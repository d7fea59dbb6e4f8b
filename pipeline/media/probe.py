"""ffprobe's JSON turned into a typed model."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import MediaError
from pipeline.media.run import run_media_command

PROBE_TIMEOUT_S = 60.0


class Stream(BaseModel):
    """One stream as ffprobe reports it (only the fields klingflow uses)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    index: int
    codec_type: str
    codec_name: str | None = None
    profile: str | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    sample_aspect_ratio: str | None = None
    r_frame_rate: str | None = None
    avg_frame_rate: str | None = None
    time_base: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    channel_layout: str | None = None
    duration: float | None = None
    nb_frames: int | None = None
    extradata_hash: str | None = None

    @property
    def frame_rate(self) -> Fraction | None:
        """The stream's frame rate as a fraction (video streams), or None."""
        for text in (self.avg_frame_rate, self.r_frame_rate):
            if text and text not in {"0/0", "0"}:
                return Fraction(text)
        return None

    @property
    def sar(self) -> Fraction:
        """Sample (pixel) aspect ratio; 1 when unknown or unset (ffprobe reports ``0:1``)."""
        text = self.sample_aspect_ratio
        if not text or ":" not in text:
            return Fraction(1)
        num, den = (int(part) for part in text.split(":", 1))
        return Fraction(num, den) if num > 0 and den > 0 else Fraction(1)

    @property
    def display_size(self) -> tuple[int, int] | None:
        """Width and height as displayed (storage width scaled by the SAR), or None."""
        if self.width is None or self.height is None:
            return None
        return round(self.width * self.sar), self.height


class FormatInfo(BaseModel):
    """The container as ffprobe reports it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format_name: str
    duration: float | None = None
    size: int | None = None
    bit_rate: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Probe(BaseModel):
    """A probed media file."""

    model_config = ConfigDict(frozen=True)

    path: str
    format: FormatInfo
    streams: tuple[Stream, ...]

    @property
    def video(self) -> Stream | None:
        """The first video stream, if any."""
        return next((s for s in self.streams if s.codec_type == "video"), None)

    @property
    def audio(self) -> Stream | None:
        """The first audio stream, if any."""
        return next((s for s in self.streams if s.codec_type == "audio"), None)

    @property
    def subtitles(self) -> tuple[Stream, ...]:
        """All subtitle streams."""
        return tuple(s for s in self.streams if s.codec_type == "subtitle")

    @property
    def duration(self) -> float:
        """The container duration in seconds (0.0 when unknown)."""
        return self.format.duration or 0.0

    @property
    def video_duration(self) -> float:
        """Length of the video stream in seconds.

        The stream's own duration first, then frames ÷ frame rate, then the container's: the
        container duration covers the longest stream, which is often the audio.
        """
        v = self.video
        if v is None:
            return 0.0
        if v.duration:
            return v.duration
        rate = v.frame_rate
        if v.nb_frames and rate:
            return float(v.nb_frames / rate)
        return self.duration

    @property
    def audio_duration(self) -> float | None:
        """Length of the first audio stream in seconds, or None without audio."""
        a = self.audio
        if a is None:
            return None
        return a.duration if a.duration is not None else self.duration


def probe(path: str | Path, *, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Probe ``path`` with ffprobe (streams, format, extradata hash).

    Raises MediaError naming the file when it is missing or not readable media.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: no such media file")
    proc = run_media_command(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_data_hash",
            "sha256",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            str(p),
        ],
        timeout=timeout,
        what=f"ffprobe {p}",
    )
    try:
        raw = json.loads(proc.stdout)
        return Probe(
            path=str(p),
            format=FormatInfo.model_validate(raw["format"]),
            streams=tuple(Stream.model_validate(s) for s in raw.get("streams", [])),
        )
    except (json.JSONDecodeError, KeyError, ValidationError) as exc:
        raise MediaError(f"{p}: ffprobe gave no usable description ({exc})") from exc


def top_level_boxes(path: str | Path, *, limit: int = 64) -> list[str]:
    """Types of the top-level ISO-BMFF boxes of an MP4/MOV file, in file order.

    Reads only the 8/16-byte box headers and seeks past each body, so it costs a few reads even on
    a large master. Stops at ``limit`` boxes or at a header that does not parse.
    """
    kinds: list[str] = []
    p = Path(path)
    try:
        size_total = p.stat().st_size
        with p.open("rb") as fh:
            offset = 0
            while offset + 8 <= size_total and len(kinds) < limit:
                fh.seek(offset)
                header = fh.read(16)
                size = int.from_bytes(header[:4], "big")
                kind = header[4:8].decode("latin-1")
                if size == 1 and len(header) == 16:  # a 64-bit "largesize" follows the type
                    size = int.from_bytes(header[8:16], "big")
                elif size == 0:  # the box runs to the end of the file
                    size = size_total - offset
                if size < 8:
                    break
                kinds.append(kind)
                offset += size
    except OSError as exc:
        raise MediaError(f"{p}: cannot read ({exc})") from exc
    return kinds


def is_faststart(path: str | Path) -> bool:
    """True when the ``moov`` index comes before the ``mdat`` media data (streamable MP4)."""
    kinds = top_level_boxes(path)
    return "moov" in kinds and "mdat" in kinds and kinds.index("moov") < kinds.index("mdat")
