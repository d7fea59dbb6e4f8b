"""What sits beside a stitched master for the people who review and edit it: a poster frame (the
review page's ``<video poster>``) and ``master.otio`` (the cut as an OpenTimelineIO timeline, its
markers named after the narrative's shots). Both are listed in the master's manifest and archived
with it (:data:`pipeline.archive.manifest.SIDECAR_NAMES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.media.frames import thumbnail
from pipeline.media.stitch import StitchResult
from pipeline.media.timeline import TIMELINE_NAME, ShotMark, build_timeline, write_timeline
from pipeline.planning.plan import NarrativePlan
from pipeline.script.model import Narrative

if TYPE_CHECKING:
    from pipeline.render.masters import Clip

#: The poster frame beside each master.
POSTER_NAME = "poster.png"
#: Wide enough for the review page's side-by-side players, small enough to load at once.
POSTER_WIDTH = 640
#: How much of a shot's action a marker's name keeps.
MARKER_ACTION_CHARS = 60


def marker_name(number: int, action: str) -> str:
    """``Shot 2: Mara climbs the stairs`` (the action on one line, shortened with an ellipsis)."""
    text = " ".join(action.split())
    if len(text) > MARKER_ACTION_CHARS:
        text = text[: MARKER_ACTION_CHARS - 1].rstrip() + "…"
    return f"Shot {number}: {text}"


def shot_marks(narrative: Narrative, plan: NarrativePlan, crossfade_s: float) -> list[ShotMark]:
    """Each shot placed where it lands in the master (a shot split over segments is one mark)."""
    marks: list[ShotMark] = []
    last_shot = -1
    for seg in plan.segments:
        # As the subtitles place them: each segment starts one crossfade earlier per join.
        offset = max(0.0, seg.start - seg.index * crossfade_s)
        for part in seg.parts:
            if part.shot == last_shot and marks:
                end = offset + part.seconds
                marks[-1] = marks[-1].model_copy(update={"duration_s": end - marks[-1].start_s})
            else:
                name = marker_name(part.shot + 1, narrative.shots[part.shot].action)
                marks.append(ShotMark(name=name, start_s=offset, duration_s=part.seconds))
            last_shot = part.shot
            offset += part.seconds
    return marks


def write_poster(master: Path, duration_s: float) -> Path:
    """The master's middle frame as ``poster.png`` beside it."""
    return thumbnail(master, duration_s / 2, master.parent / POSTER_NAME, width=POSTER_WIDTH)


def write_master_timeline(
    result: StitchResult, narrative: Narrative, plan: NarrativePlan, clips: Sequence[Clip]
) -> Path:
    """``master.otio`` beside the master ``result`` made from ``clips``."""
    master = Path(result.path)
    metadata = [
        {"segment": c.request.segment, "request_id": c.request_id, "clip_sha256": c.sha256} for c in clips
    ]
    timeline = build_timeline(
        result.plan,
        name=f"{narrative.id}/{clips[0].request.variant}/{clips[0].request.pass_}",
        master=master,
        shots=shot_marks(narrative, plan, result.plan.crossfade_s),
        clip_metadata=metadata,
    )
    return write_timeline(timeline, master.parent / TIMELINE_NAME)


def write_sidecars(
    result: StitchResult, narrative: Narrative, plan: NarrativePlan, clips: Sequence[Clip]
) -> list[Path]:
    """The poster and the timeline of a freshly stitched master; returns their paths."""
    return [
        write_poster(Path(result.path), result.duration_s),
        write_master_timeline(result, narrative, plan, clips),
    ]
