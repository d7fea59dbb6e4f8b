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
