"""``master.otio``: a master's cut as an OpenTimelineIO timeline, for an editor's own tools.

The timeline is made from the :class:`~pipeline.media.stitch_plan.StitchPlan` the master was
stitched by, so it says exactly what the stitch did: one video track of the clips in order, each
with the source range it contributes (a trim shortens it; padding shows as a range past the
clip's available media), crossfades as dissolve transitions, an audio track alike (a gap where a
clip is silent), and a marker per shot on the timeline, named after the shot. An editor opens it
(OTIO's adapters write Resolve/Premiere formats) and relinks to the clips, whose sha256s and
request ids are in each clip's metadata.

OTIO cuts clips edge to edge and lets a transition borrow media past them: clip ``k`` is placed at
its master start frame and lasts until the next clip's, and the crossfade after it starts on that
cut (``in_offset`` 0) and lasts the overlap (``out_offset``), using the outgoing clip's tail as a
handle and the incoming clip's head — the spans the stitch plan's crossfade piece reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import opentimelineio as otio
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import MediaError
from pipeline.media.stitch_plan import StitchPlan

#: The name of the timeline beside a master.
TIMELINE_NAME = "master.otio"
#: Where klingflow's own facts sit in OTIO metadata (OTIO's convention: one key per tool).
METADATA_KEY = "klingflow"


class ShotMark(BaseModel):
    """A shot of the narrative placed in master time: a marker on the timeline."""

    model_config = ConfigDict(frozen=True)

    name: str
    start_s: float = Field(ge=0)
    duration_s: float = Field(ge=0)


def _frames(seconds: float, rate: float) -> int:
    return round(seconds * rate)


def _time(frames: int, rate: float) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(frames, rate)


def _range(start: int, duration: int, rate: float) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(_time(start, rate), _time(duration, rate))


def cut_frames(plan: StitchPlan) -> list[int]:
    """Where each clip starts in the master, in frames, and (last) where the master ends.

    The same rounding as the stitch plan's pieces: clip ``k`` starts at ``round(start_k · rate)``.
    """
    rate = float(plan.frame_rate)
    last = plan.clips[-1]
    return [_frames(c.start_s, rate) for c in plan.clips] + [_frames(last.start_s + last.take_s, rate)]


def overlap_frames(plan: StitchPlan, k: int) -> int:
    """Frames of the crossfade between clip ``k`` and the next (0 for a cut)."""
    if not plan.crossfade_s:
        return 0
    rate = float(plan.frame_rate)
    clip = plan.clips[k]
    return _frames(clip.start_s + clip.take_s, rate) - cut_frames(plan)[k + 1]


def _clip(plan: StitchPlan, k: int, duration: int, metadata: Mapping[str, Any]) -> otio.schema.Clip:
    rate = float(plan.frame_rate)
    clip = plan.clips[k]
    reference = otio.schema.ExternalReference(
        target_url=Path(clip.path).resolve().as_uri(),
        available_range=_range(0, _frames(clip.source_s, rate), rate),
    )
    facts = {"index": k, "trim_s": clip.trim_s, "pad_s": clip.pad_s, **metadata}
    return otio.schema.Clip(
        name=clip.label or Path(clip.path).name,
        media_reference=reference,
        source_range=_range(0, duration, rate),
        metadata={METADATA_KEY: facts},
    )


def _track(
    plan: StitchPlan, kind: str, name: str, clip_metadata: Sequence[Mapping[str, Any]]
) -> otio.schema.Track:
    rate = float(plan.frame_rate)
    cuts = cut_frames(plan)
    track = otio.schema.Track(name=name, kind=kind)
    previous_is_clip = False
    for k, clip in enumerate(plan.clips):
        duration = cuts[k + 1] - cuts[k]
        audible = kind == otio.schema.TrackKind.Video or clip.has_audio
        fade = overlap_frames(plan, k - 1) if k > 0 else 0
        # A dissolve needs media on both sides; a silent clip's audio is a gap.
        if fade and previous_is_clip and audible:
            track.append(
                otio.schema.Transition(
                    name=f"crossfade {k - 1}→{k}",
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=_time(0, rate),
                    out_offset=_time(fade, rate),
                )
            )
        if audible:
            track.append(_clip(plan, k, duration, clip_metadata[k] if k < len(clip_metadata) else {}))
        else:
            track.append(otio.schema.Gap(source_range=_range(0, duration, rate)))
        previous_is_clip = audible
    return track


def build_timeline(
    plan: StitchPlan,
    *,
    name: str,
    master: str | Path,
    shots: Sequence[ShotMark] = (),
    clip_metadata: Sequence[Mapping[str, Any]] = (),
) -> otio.schema.Timeline:
    """The timeline of the master that ``plan`` stitched (see the module docstring).

    ``clip_metadata`` (one mapping per clip, JSON values) is kept under each clip's
    ``metadata["klingflow"]``; ``master`` is recorded in the timeline's metadata.
    """
    rate = float(plan.frame_rate)
    timeline = otio.schema.Timeline(name=name, global_start_time=_time(0, rate))
    timeline.metadata[METADATA_KEY] = {
        "master": Path(master).name,
        "mode": plan.mode,
        "transition": plan.transition,
        "crossfade_s": plan.crossfade_s,
    }
    timeline.tracks.append(_track(plan, otio.schema.TrackKind.Video, "video", clip_metadata))
    if any(c.has_audio for c in plan.clips):
        timeline.tracks.append(_track(plan, otio.schema.TrackKind.Audio, "audio", clip_metadata))
    end = cut_frames(plan)[-1]
    for shot in shots:
        start = min(_frames(shot.start_s, rate), end)
        duration = min(_frames(shot.duration_s, rate), end - start)
        timeline.tracks.markers.append(
            otio.schema.Marker(
                name=shot.name,
                marked_range=_range(start, duration, rate),
                color=otio.schema.MarkerColor.CYAN,
            )
        )
    return timeline


def write_timeline(timeline: otio.schema.Timeline, out: str | Path) -> Path:
    """Write ``timeline`` as OTIO JSON to ``out`` (atomically) and return its path."""
    path = Path(out)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        otio.adapters.write_to_file(timeline, str(tmp), adapter_name="otio_json")
    except (otio.exceptions.OTIOError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{path}: cannot write the timeline ({exc})") from exc
    os.replace(tmp, path)
    return path


def read_timeline(path: str | Path) -> otio.schema.Timeline:
    """The timeline in ``path`` (MediaError when it is not OTIO JSON)."""
    try:
        timeline = otio.adapters.read_from_file(str(path), adapter_name="otio_json")
    except (OSError, otio.exceptions.OTIOError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable OpenTimelineIO timeline ({exc})") from exc
    if not isinstance(timeline, otio.schema.Timeline):
        raise MediaError(f"{path}: holds a {type(timeline).__name__}, not a timeline")
    return timeline
