"""The stitch plan: a pure, typed decision about how clips become one master.

Computed from the clips' probes and nothing else, so it can be tested exhaustively without
ffmpeg. Executing it is :mod:`pipeline.media.stitch`'s job.

Two modes:

* ``copy`` — every clip has the same video codec parameters (see :func:`incompatibilities`), the
  joins are cuts and no clip needs trimming: the video is stream-copied through the concat
  demuxer and only the audio is rebuilt (each clip's audio padded/trimmed to its own video length
  so nothing drifts at the joins).
* ``reencode`` — anything else: every clip is normalised to one canvas (scale + pad, SAR 1,
  constant frame rate, yuv420p, 48 kHz stereo), trimmed or padded to its scripted length, and
  joined by cuts or by xfade/acrossfade.

Either way the master is made of :class:`Piece` s rendered one ffmpeg command at a time — a
clip's body, or one crossfade between the tail of a clip and the head of the next — so no command
ever opens more than two clips, and memory does not grow with the number of clips. Pieces are
measured in whole frames and samples of the master, so they join exactly: their video is joined
by the concat demuxer (stream copy), their PCM audio byte for byte.

Stream copy cannot cut a clip exactly: with B-frames the concat demuxer's ``outpoint`` keeps
packets past the cut and duplicates timestamps (measured: a 4 s clip cut at 2.5 s gave two extra
frames with repeated pts). A clip longer than scripted by more than a frame therefore forces the
re-encode — of every clip: a re-encoded piece cannot sit among stream-copied clips, whose encoder
parameters (SPS/PPS) it would not share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import InputError, MediaError
from pipeline.media.probe import Probe

Mode = Literal["copy", "reencode"]
Transition = Literal["cut", "crossfade"]

#: Used when no clip declares a frame rate (ffprobe reports ``0/0`` for some variable-rate files).
DEFAULT_FRAME_RATE = Fraction(24)
#: A clip within this many frames of its scripted length is kept whole in copy mode.
COPY_LENGTH_TOLERANCE_FRAMES = 1
#: A millisecond of slack on every comparison of float durations from ffprobe.
_EPS = 1e-3
#: Every piece's audio, and so the master's, is 48 kHz stereo.
SAMPLE_RATE = 48_000
#: A span starting later than this in its clip seeks there instead of decoding from the start;
#: the seek stays this far before the clip's end, so there is always a frame to hold.
SEEK_MARGIN_S = 1.0


class ClipInput(BaseModel):
    """One clip to stitch: its file, its scripted length in seconds and an optional label."""

    model_config = ConfigDict(frozen=True)

    path: str
    scripted_s: float = Field(gt=0)
    label: str = ""


class StitchOptions(BaseModel):
    """How to stitch: the ``output`` section of a script, plus encoder settings.

    ``loudness_lufs=None`` leaves the audio level untouched. ``canvas`` and ``frame_rate`` override
    the values otherwise taken from the clips (the most common size and rate, the first clip's on a
    tie).
    """

    model_config = ConfigDict(frozen=True)

    transition: Transition = "cut"
    crossfade_s: float = Field(default=0.5, gt=0)
    loudness_lufs: float | None = -16.0
    true_peak_db: float = -1.5
    loudness_range_lu: float = 11.0
    canvas: tuple[int, int] | None = None
    frame_rate: Fraction | None = None
    #: Re-encode even when the clips could be stream-copied (to normalise, or to benchmark).
    force_reencode: bool = False
    x264_preset: str = "veryfast"
    x264_crf: int = Field(default=18, ge=0, le=51)
    audio_bitrate: str = "192k"
    #: ISO 639-2/T language of the subtitle track (``und``: undetermined).
    subtitle_language: str = "und"


class ClipPlan(BaseModel):
    """What happens to one clip.

    ``take_s`` is the length the clip contributes before any crossfade overlap; ``trim_s`` is cut
    from its end and ``pad_s`` added (last frame held, silence) to reach it.
    """

    model_config = ConfigDict(frozen=True)

    index: int
    path: str
    label: str
    scripted_s: float
    source_s: float
    has_audio: bool
    sar: Fraction
    take_s: float
    trim_s: float
    pad_s: float
    start_s: float


class Span(BaseModel):
    """The stretch of one clip that a piece uses, on the clip's normalised timeline.

    The clip is opened with an input seek of ``seek_s`` (0: read from the start); after it,
    ``first_frame`` frames (at the plan's rate) and ``first_sample`` samples (48 kHz) are skipped
    and the piece's length taken. The seek is a whole number of frames, so frames and samples
    skipped describe the same instant.
    """

    model_config = ConfigDict(frozen=True)

    clip: int
    seek_s: float = Field(ge=0)
    first_frame: int = Field(ge=0)
    first_sample: int = Field(ge=0)


class Piece(BaseModel):
    """One separately rendered stretch of the master, in whole frames and samples.

    ``clip``: the body of one clip (one span). ``crossfade``: the overlap of two neighbours, the
    outgoing clip's tail faded into the incoming clip's head (two spans of the same length).
    Consecutive pieces tile the master: each starts where the previous one ends.
    """

    model_config = ConfigDict(frozen=True)

    index: int
    kind: Literal["clip", "crossfade"]
    spans: tuple[Span, ...] = Field(min_length=1, max_length=2)
    start_frame: int = Field(ge=0)
    frames: int = Field(gt=0)
    start_sample: int = Field(ge=0)
    samples: int = Field(gt=0)


class StitchPlan(BaseModel):
    """The whole decision: mode (and why), canvas, rate, per-clip lengths, joins, total length."""

    model_config = ConfigDict(frozen=True)

    mode: Mode
    reasons: tuple[str, ...]
    canvas: tuple[int, int]
    frame_rate: Fraction
    transition: Transition
    crossfade_s: float
    clips: tuple[ClipPlan, ...]
    xfade_offsets: tuple[float, ...]
    expected_duration_s: float
    options: StitchOptions
    #: How the master is rendered, in order; in copy mode only their audio is rendered.
    pieces: tuple[Piece, ...]

    @model_validator(mode="after")
    def _consistent(self) -> StitchPlan:
        if self.mode == "copy" and self.transition == "crossfade":
            raise ValueError("a crossfade cannot be stream-copied")
        return self

    @property
    def frame_s(self) -> float:
        """Length of one frame in seconds."""
        return float(1 / self.frame_rate)

    @property
    def tolerance_s(self) -> float:
        """How far the master may be from ``expected_duration_s``: one frame per join (min one)."""
        return max(1, len(self.clips) - 1) * self.frame_s + _EPS


def master_starts(takes: Sequence[float], crossfade_s: float = 0.0) -> list[float]:
    """Where each piece starts in the master: Σ of the pieces before it − k·T for crossfades."""
    starts: list[float] = []
    acc = 0.0
    for k, take in enumerate(takes):
        starts.append(acc - k * crossfade_s)
        acc += take
    return starts


def _sample_at(frame: int, frame_rate: Fraction) -> int:
    """The first audio sample of video frame ``frame``: exact, so frames and samples never drift."""
    return round(Fraction(frame) * SAMPLE_RATE / frame_rate)


def _span(clip: ClipPlan, local_frame: int, frame_rate: Fraction) -> Span:
    """Where a piece starting ``local_frame`` frames into ``clip`` reads it from."""
    if local_frame == 0:
        return Span(clip=clip.index, seek_s=0.0, first_frame=0, first_sample=0)
    # Seek near the start of the span (a whole number of frames), but never past the last
    # second of the source: a padded clip's tail is its last frame held, which needs a frame.
    latest = max(0.0, clip.source_s - SEEK_MARGIN_S)
    seek_frame = min(local_frame, math.floor(latest * frame_rate))
    skip = local_frame - seek_frame
    return Span(
        clip=clip.index,
        seek_s=float(seek_frame / frame_rate),
        first_frame=skip,
        first_sample=_sample_at(skip, frame_rate),
    )


def plan_pieces(
    clips: Sequence[ClipPlan], frame_rate: Fraction, crossfade_s: float = 0.0, *, copy: bool = False
) -> tuple[Piece, ...]:
    """Cut the master into pieces: each clip's body and, with crossfades, each overlap.

    Boundaries are rounded to whole frames of the master (clip ``k`` starts at frame
    ``round(start_k · rate)``) and samples follow frames exactly, so the pieces' lengths add up to
    the master's. In ``copy`` mode each clip is one piece of its own length (only audio is
    rendered; the concat demuxer places the clips' video by the same lengths).
    """
    if copy:
        edges = [c.start_s for c in clips] + [clips[-1].start_s + clips[-1].take_s]
        samples = [round(t * SAMPLE_RATE) for t in edges]
        frames = [round(t * frame_rate) for t in edges]
        return tuple(
            Piece(
                index=k,
                kind="clip",
                spans=(Span(clip=k, seek_s=0.0, first_frame=0, first_sample=0),),
                start_frame=frames[k],
                # Informational: copy mode copies the clip's own frames.
                frames=max(1, frames[k + 1] - frames[k]),
                start_sample=samples[k],
                samples=samples[k + 1] - samples[k],
            )
            for k in range(len(clips))
        )

    def frame(t: float) -> int:
        return round(t * frame_rate)

    origin = [frame(c.start_s) for c in clips]
    last = len(clips) - 1
    # (first master frame, end master frame, clips involved) in master order.
    stretches: list[tuple[int, int, tuple[int, ...]]] = []
    for k, c in enumerate(clips):
        head = crossfade_s if k > 0 else 0.0
        tail = crossfade_s if k < last else 0.0
        stretches.append((frame(c.start_s + head), frame(c.start_s + c.take_s - tail), (k,)))
        if k < last and crossfade_s:
            stretches.append((origin[k + 1], frame(c.start_s + c.take_s), (k, k + 1)))
    pieces: list[Piece] = []
    for begin, end, involved in stretches:
        if end <= begin:
            continue  # a body wholly taken by the crossfades either side of it
        start_sample = _sample_at(begin, frame_rate)
        pieces.append(
            Piece(
                index=len(pieces),
                kind="clip" if len(involved) == 1 else "crossfade",
                spans=tuple(_span(clips[k], begin - origin[k], frame_rate) for k in involved),
                start_frame=begin,
                frames=end - begin,
                start_sample=start_sample,
                samples=_sample_at(end, frame_rate) - start_sample,
            )
        )
    return tuple(pieces)


def _video_signature(p: Probe) -> dict[str, object]:
    v = p.video
    assert v is not None  # plan_stitch rejects clips without video before asking
    # Everything the concat demuxer needs to be identical to splice packets into one stream.
    return {
        "stream index": v.index,
        "codec": v.codec_name,
        "profile": v.profile,
        "size": (v.width, v.height),
        "pixel format": v.pix_fmt,
        "SAR": v.sar,
        "frame rate": v.frame_rate,
        "time base": v.time_base,
        "extradata": v.extradata_hash,
    }


def incompatibilities(probes: Sequence[Probe]) -> list[str]:
    """Why these clips' video cannot be stream-copied into one file (empty when it can).

    Compares what ``-f concat -c copy`` silently gets wrong: codec, profile, size, SAR, frame rate,
    time base and ``extradata_hash`` (SPS/PPS). Audio is not compared: it is always rebuilt.
    """
    if not probes:
        return []
    first = _video_signature(probes[0])
    problems: list[str] = []
    for i, p in enumerate(probes[1:], start=1):
        for key, value in _video_signature(p).items():
            if value != first[key]:
                problems.append(f"clip {i}: {key} {value} differs from clip 0's {first[key]}")
    return problems


_T = TypeVar("_T")


def _most_common(values: Sequence[_T]) -> _T:
    # Counter.most_common keeps first-seen order among ties, so the first clip wins a tie.
    return Counter(values).most_common(1)[0][0]


def _even(n: int) -> int:
    # yuv420p needs even dimensions.
    return max(2, n - n % 2)


def plan_stitch(
    clips: Sequence[ClipInput], probes: Sequence[Probe], options: StitchOptions | None = None
) -> StitchPlan:
    """Decide how ``clips`` (probed as ``probes``, same order) become one master.

    Raises MediaError for a clip without video, InputError for a crossfade longer than half the
    shortest clip.

    Example::

        plan = plan_stitch([ClipInput(path="a.mp4", scripted_s=5)], [probe("a.mp4")])
        plan.mode, plan.expected_duration_s   # ("copy", 5.0)
    """
    opts = options or StitchOptions()
    if not clips:
        raise InputError("nothing to stitch: no clips")
    if len(clips) != len(probes):
        raise ValueError(f"{len(clips)} clips but {len(probes)} probes")
    for clip, p in zip(clips, probes, strict=True):
        if p.video is None or not p.video.width or not p.video.height:
            raise MediaError(f"{clip.path}: no video stream to stitch")

    videos = [p.video for p in probes if p.video is not None]
    rates = [v.frame_rate for v in videos if v.frame_rate]
    frame_rate = opts.frame_rate or (_most_common(rates) if rates else DEFAULT_FRAME_RATE)
    frame_s = float(1 / frame_rate)
    if opts.canvas is not None:
        canvas = (_even(opts.canvas[0]), _even(opts.canvas[1]))
    else:
        sizes = [v.display_size for v in videos if v.display_size]
        w, h = _most_common(sizes)
        canvas = (_even(w), _even(h))

    reasons = incompatibilities(probes)
    if opts.force_reencode:
        reasons.append("re-encoding was requested")
    if opts.transition == "crossfade" and len(clips) > 1:
        reasons.append("crossfade joins need re-encoding")
    tolerance = COPY_LENGTH_TOLERANCE_FRAMES * frame_s + _EPS
    for i, (clip, p) in enumerate(zip(clips, probes, strict=True)):
        diff = p.video_duration - clip.scripted_s
        if abs(diff) > tolerance:
            verb = "longer" if diff > 0 else "shorter"
            reasons.append(f"clip {i} is {abs(diff):.3f} s {verb} than scripted ({clip.scripted_s:g} s)")
    mode: Mode = "reencode" if reasons else "copy"

    # In copy mode a clip contributes what its video holds; re-encoding makes it exactly scripted.
    takes = [
        p.video_duration if mode == "copy" else clip.scripted_s for clip, p in zip(clips, probes, strict=True)
    ]
    fade = opts.crossfade_s if opts.transition == "crossfade" and len(clips) > 1 else 0.0
    if fade and fade * 2 > min(takes) + _EPS:
        raise InputError(f"crossfade of {fade:g} s is longer than half the shortest clip ({min(takes):g} s)")
    starts = master_starts(takes, fade)
    plans = tuple(
        ClipPlan(
            index=i,
            path=clip.path,
            label=clip.label,
            scripted_s=clip.scripted_s,
            source_s=p.video_duration,
            has_audio=p.audio is not None,
            sar=p.video.sar if p.video else Fraction(1),
            take_s=take,
            trim_s=max(0.0, p.video_duration - take),
            pad_s=max(0.0, take - p.video_duration),
            start_s=start,
        )
        for i, (clip, p, take, start) in enumerate(zip(clips, probes, takes, starts, strict=True))
    )
    return StitchPlan(
        pieces=plan_pieces(plans, frame_rate, fade, copy=mode == "copy"),
        mode=mode,
        reasons=tuple(reasons),
        canvas=canvas,
        frame_rate=frame_rate,
        transition=opts.transition if fade else "cut",
        crossfade_s=fade,
        clips=plans,
        xfade_offsets=tuple(starts[1:]) if fade else (),
        expected_duration_s=sum(takes) - (len(takes) - 1) * fade,
        options=opts,
    )
