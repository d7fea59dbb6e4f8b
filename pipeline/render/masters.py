"""Turning a narrative's clips into a checked master with its sidecars and manifest."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.archive.manifest import SegmentRecord, Timings, build_manifest, write_manifest
from pipeline.errors import KlingflowError
from pipeline.media.contact_sheet import SheetRow, contact_sheet
from pipeline.media.qc import QCReport, check
from pipeline.media.stitch import stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions
from pipeline.media.subtitles import Cue, DialogueLine, ShotTiming, cues_for_shots
from pipeline.planning.plan import NarrativePlan, Pass, PlannedRequest
from pipeline.script.model import Narrative, Script


@dataclass(frozen=True)
class Clip:
    """A generated, verified segment clip and how it was bought."""

    request: PlannedRequest
    path: Path
    sha256: str
    request_id: str
    cost: Decimal


@dataclass(frozen=True)
class MasterOutcome:
    """A master of one narrative, variant and pass: delivered, or why not."""

    narrative: str
    variant: str
    pass_: Pass
    directory: Path
    path: Path | None = None
    sha256: str | None = None
    duration_s: float = 0.0
    loudness_lufs: float | None = None
    qc: QCReport | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """True when the master exists (whatever its quality checks say)."""
        return self.path is not None and self.error is None

    @property
    def passed(self) -> bool:
        """Delivered and passing its quality checks."""
        return self.delivered and self.qc is not None and self.qc.passed


def subtitle_cues(narrative: Narrative, plan: NarrativePlan, crossfade_s: float) -> list[Cue]:
    """Dialogue cues in master time: each shot part placed where its segment lands."""
    shots: list[ShotTiming] = []
    for seg in plan.segments:
        offset = seg.start - seg.index * crossfade_s
        for part in seg.parts:
            shot = narrative.shots[part.shot]
            lines = tuple(
                DialogueLine(speaker=shot.dialogue[i].speaker, line=shot.dialogue[i].line) for i in part.lines
            )
            shots.append(ShotTiming(start_s=max(offset, 0.0), duration_s=part.seconds, lines=lines))
            offset += part.seconds
    return cues_for_shots(shots)


def make_master(
    *,
    script: Script,
    script_sha256: str,
    run_id: str,
    narrative: Narrative,
    plan: NarrativePlan,
    clips: Sequence[Clip],
    directory: Path,
    plan_summary: dict[str, Any],
    started_at: datetime,
) -> MasterOutcome:
    """Stitch ``clips`` (one per segment, in order) into ``directory/master.mp4``; check it,
    draw its contact sheet and write its manifest. Blocking (ffmpeg): run it in a thread."""
    first = clips[0].request
    steps: dict[str, float] = {}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        crossfade = script.output.crossfade_seconds if script.output.transition == "crossfade" else 0.0
        cues = subtitle_cues(narrative, plan, crossfade) if script.subtitles else None
        t0 = time.monotonic()
        result = stitch(
            [
                ClipInput(path=str(c.path), scripted_s=seg.content_seconds, label=f"segment {seg.index}")
                for c, seg in zip(clips, plan.segments, strict=True)
            ],
            directory / "master.mp4",
            StitchOptions(
                transition=script.output.transition,
                crossfade_s=script.output.crossfade_seconds,
                loudness_lufs=script.output.loudness_lufs,
            ),
            subtitles=cues or None,
        )
        steps["stitch_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        audio = any(c.request.audio for c in clips)
        qc = check(directory / "master.mp4", expect_duration=result.expected_duration_s, expect_audio=audio)
        steps["qc_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        contact_sheet(
            [
                SheetRow(
                    clip=str(c.path),
                    narrative=narrative.id,
                    variant=c.request.variant,
                    segment=c.request.segment,
                    tier=c.request.tier.value,
                    seconds=seg.content_seconds,
                )
                for c, seg in zip(clips, plan.segments, strict=True)
            ],
            directory / "contact-sheet.png",
        )
        steps["contact_sheet_s"] = time.monotonic() - t0
        manifest = build_manifest(
            directory,
            script_name=script.name,
            script_sha256=script_sha256,
            run_id=run_id,
            narrative=narrative.id,
            variant=first.variant,
            pass_=first.pass_,
            plan=plan_summary,
            segments=[
                SegmentRecord(
                    narrative=narrative.id,
                    variant=c.request.variant,
                    pass_=c.request.pass_,
                    index=c.request.segment,
                    request_id=c.request_id,
                    tier=c.request.tier,
                    duration_s=c.request.duration,
                    audio=c.request.audio,
                    seed=c.request.seed,
                    prompt=c.request.prompt,
                    cost_usd=c.cost,
                    clip_sha256=c.sha256,
                )
                for c in clips
            ],
            qc=qc.model_dump(mode="json"),
            duration_s=result.duration_s,
            loudness_lufs=result.loudness.integrated_lufs,
            timings=Timings(started_at=started_at, finished_at=datetime.now(UTC), steps=steps),
        )
        write_manifest(manifest, directory / "manifest.json")
    except KlingflowError as exc:
        return MasterOutcome(narrative.id, first.variant, first.pass_, directory, error=str(exc))
    return MasterOutcome(
        narrative.id,
        first.variant,
        first.pass_,
        directory,
        path=directory / "master.mp4",
        sha256=result.sha256,
        duration_s=result.duration_s,
        loudness_lufs=result.loudness.integrated_lufs,
        qc=qc,
    )
