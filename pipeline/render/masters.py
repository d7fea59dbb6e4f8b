"""Turning a narrative's clips into a checked master with its sidecars and manifest.

A master's inputs (its clips' sha256s and every setting the stitch uses) are recorded by hash in
``inputs.json`` beside it, last; a resumed run whose inputs are unchanged, and whose master still
matches its manifest, keeps the master instead of stitching it again. Temporary files a killed
run left in a master's folder are removed before it is made.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.archive.manifest import (
    Manifest,
    SegmentRecord,
    Timings,
    build_manifest,
    load_manifest,
    write_manifest,
)
from pipeline.errors import DiskFull, KlingflowError
from pipeline.hashing import sha256_file
from pipeline.media.contact_sheet import (
    PreparedRow,
    SheetLayout,
    SheetRow,
    cell_size,
    contact_sheet,
    render_row,
)
from pipeline.media.probe import Probe, probe
from pipeline.media.qc import Detections, QCReport, QCThresholds, check, detect
from pipeline.media.qc_master import PlacedClip, check_master
from pipeline.media.stitch import stitch
from pipeline.media.stitch_plan import ClipInput, StitchOptions
from pipeline.media.subtitles import Cue, DialogueLine, ShotTiming, cues_for_shots, track_language
from pipeline.planning.plan import NarrativePlan, Pass, PlannedRequest
from pipeline.render.sidecars import write_sidecars
from pipeline.script.model import Narrative, Script


@dataclass(frozen=True)
class Clip:
    """A generated, verified segment clip and how it was bought."""

    request: PlannedRequest
    path: Path
    sha256: str
    request_id: str
    cost: Decimal
    #: The run that paid for the clip when it came from the library (None: this run bought it).
    paid_by: str | None = None


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


#: Written last beside a finished master: what it was made from (see the module docstring).
INPUTS_NAME = "inputs.json"
#: Bumped when stitching changes in a way that should remake masters made by older code.
INPUTS_VERSION = 2  # 2: poster.png and master.otio beside each master
#: Temporary names the stitch, contact sheet and atomic writes use in a master's folder.
LEFTOVER_PATTERNS = (".master.*", ".contact-sheet.*", ".*.partial")


def master_options(script: Script) -> StitchOptions:
    """The stitch settings of every master of ``script`` (its ``output`` section)."""
    return StitchOptions(
        transition=script.output.transition,
        crossfade_s=script.output.crossfade_seconds,
        loudness_lufs=script.output.loudness_lufs,
    )


def master_cues(script: Script, narrative: Narrative, plan: NarrativePlan) -> list[Cue]:
    """The subtitle cues of a narrative's masters (none when the script has no subtitles)."""
    if not script.subtitles:
        return []
    crossfade = script.output.crossfade_seconds if script.output.transition == "crossfade" else 0.0
    return subtitle_cues(narrative, plan, crossfade)


@dataclass(frozen=True)
class ClipInspection:
    """What a clip's arrival prepared for its master: its probe, its share of the master's QC
    (picture and sound detectors) and its contact-sheet row, drawn ahead."""

    probe: Probe
    detections: Detections
    sheet_row: PreparedRow | None = None


def sheet_row(narrative: str, request: PlannedRequest, seconds: float, path: Path) -> SheetRow:
    """A clip's row on its master's contact sheet."""
    return SheetRow(
        clip=str(path),
        narrative=narrative,
        variant=request.variant,
        segment=request.segment,
        tier=request.tier.value,
        seconds=seconds,
    )


def inspect_clip(path: Path, row: SheetRow | None = None) -> ClipInspection | None:
    """Probe a clip that just arrived, run its detectors and (given its ``row``) draw its
    contact-sheet row beside it (a dot file). None when it cannot be inspected: its master is
    then made and checked as if nothing had been prepared."""
    try:
        probed = probe(path)
        prepared: PreparedRow | None = None
        if row is not None:
            cell = cell_size(probed, SheetLayout())
            png = render_row(row, probed, cell, SheetLayout(), path.with_name(f".{path.stem}.sheet-row.png"))
            prepared = PreparedRow(row=row, cell=cell, png=str(png))
        return ClipInspection(probed, detect(probed, QCThresholds()), prepared)
    except KlingflowError:
        return None


def remove_leftovers(directory: Path) -> list[Path]:
    """Remove what a killed run left in a master's folder: work folders and partial writes.

    Safe because one process at a time holds a run (the run lock) and a master's folder belongs
    to that run; returns what was removed.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for pattern in LEFTOVER_PATTERNS:
        for path in directory.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def master_inputs(
    clips: Sequence[Clip], plan: NarrativePlan, options: StitchOptions, cues: Sequence[Cue]
) -> dict[str, Any]:
    """Everything a master is made from, as JSON data: equal inputs make an equal master."""
    return {
        "version": INPUTS_VERSION,
        "clips": [
            {"sha256": c.sha256, "scripted_s": seg.content_seconds, "audio": c.request.audio}
            for c, seg in zip(clips, plan.segments, strict=True)
        ],
        "master_seconds": plan.master_seconds,
        "options": options.model_dump(mode="json"),
        "subtitles": [c.model_dump(mode="json") for c in cues],
    }


def inputs_digest(inputs: dict[str, Any]) -> str:
    """The sha256 of ``inputs`` in a canonical JSON form."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _unchanged_master(directory: Path, digest: str) -> Manifest | None:
    """The manifest of the master in ``directory`` if it was made from ``digest`` and its files
    still match that manifest; None when it must be stitched (again)."""
    try:
        recorded = json.loads((directory / INPUTS_NAME).read_text(encoding="utf-8"))
        if recorded.get("inputs_sha256") != digest:
            return None
        manifest = load_manifest(directory / "manifest.json")
        files = [
            (manifest.master.name, manifest.master.sha256),
            *((f.name, f.sha256) for f in manifest.files),
        ]
        if recorded.get("master_sha256") != manifest.master.sha256:
            return None
        for name, sha256 in files:
            if sha256_file(directory / name) != sha256:
                return None
    except (OSError, ValueError, KlingflowError, ValidationError, AttributeError):
        return None
    return manifest


def _kept_outcome(
    narrative: str, first: PlannedRequest, directory: Path, manifest: Manifest
) -> MasterOutcome:
    qc = QCReport.model_validate(manifest.qc) if manifest.qc else None
    return MasterOutcome(
        narrative,
        first.variant,
        first.pass_,
        directory,
        path=directory / manifest.master.name,
        sha256=manifest.master.sha256,
        duration_s=manifest.master.duration_s,
        loudness_lufs=manifest.master.loudness_lufs,
        qc=qc,
    )


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
    inspections: Sequence[ClipInspection | None] | None = None,
) -> MasterOutcome:
    """Stitch ``clips`` (one per segment, in order) into ``directory/master.mp4``; check it,
    draw its contact sheet and write its manifest (:func:`build_master`). A master that cannot be
    made comes back with its ``error``. Blocking (ffmpeg): run it in a thread."""
    try:
        return build_master(
            script=script,
            script_sha256=script_sha256,
            run_id=run_id,
            narrative=narrative,
            plan=plan,
            clips=clips,
            directory=directory,
            plan_summary=plan_summary,
            started_at=started_at,
            inspections=inspections,
        )
    except DiskFull:
        raise  # the run stops with exit 73, naming the directory
    except (KlingflowError, OSError) as exc:
        # OSError too (a full disk while joining audio): reported with the master, whose run
        # decides what it means (its text names the errno).
        first = clips[0].request
        return MasterOutcome(narrative.id, first.variant, first.pass_, directory, error=str(exc))


def build_master(
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
    with_contact_sheet: bool = True,
    inspections: Sequence[ClipInspection | None] | None = None,
) -> MasterOutcome:
    """Stitch ``clips`` (one per segment, in order) into ``directory/master.mp4``; check it,
    draw its contact sheet (unless told not to: a rehearsal that already drew one of that shape)
    and write its manifest; keep the master already there when it was made from the same inputs.
    ``inspections`` (from :func:`inspect_clip` when each clip arrived) spare probing the clips
    again, let the master's QC decode only its joins and audio, and give its contact sheet rows
    already drawn. Raises KlingflowError when the master cannot be
    made."""
    first = clips[0].request
    steps: dict[str, float] = {}
    directory.mkdir(parents=True, exist_ok=True)
    remove_leftovers(directory)
    options = master_options(script)
    cues = master_cues(script, narrative, plan)
    if cues:
        languages = (line.language for shot in narrative.shots for line in shot.dialogue)
        options = options.model_copy(update={"subtitle_language": track_language(languages)})
    digest = inputs_digest(master_inputs(clips, plan, options, cues))
    kept = _unchanged_master(directory, digest)
    if kept is not None:
        return _kept_outcome(narrative.id, first, directory, kept)
    # From here the master is being remade: its old record of inputs no longer holds.
    (directory / INPUTS_NAME).unlink(missing_ok=True)
    t0 = time.monotonic()
    # Prepared when each clip arrived: probes, detections and contact-sheet rows (all or none).
    ready = [i for i in inspections or () if i is not None]
    if len(ready) != len(clips):
        ready = []
    result = stitch(
        [
            ClipInput(path=str(c.path), scripted_s=seg.content_seconds, label=f"segment {seg.index}")
            for c, seg in zip(clips, plan.segments, strict=True)
        ],
        directory / "master.mp4",
        options,
        subtitles=cues or None,
        probes=[i.probe for i in ready] if ready else None,
    )
    steps["stitch_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    audio = any(c.request.audio for c in clips)
    # The scripted length (the plan's), not the stitcher's own idea of it: QC checks the contract.
    expect = plan.master_seconds or result.expected_duration_s
    if ready:
        placed = [
            PlacedClip(start_s=c.start_s, take_s=c.take_s, detections=i.detections)
            for c, i in zip(result.plan.clips, ready, strict=True)
        ]
        qc = check_master(
            result.probe,
            placed,
            result.loudness,
            expect_duration=expect,
            expect_audio=audio,
            duration_tolerance_s=result.plan.tolerance_s,
        )
    else:
        qc = check(
            directory / "master.mp4",
            expect_duration=expect,
            expect_audio=audio,
            duration_tolerance_s=result.plan.tolerance_s,
            # The stitch probed and levelled the master: QC reuses both instead of redoing them.
            probed=result.probe,
            loudness=result.loudness,
        )
    steps["qc_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    if with_contact_sheet:
        contact_sheet(
            [
                sheet_row(narrative.id, c.request, seg.content_seconds, c.path)
                for c, seg in zip(clips, plan.segments, strict=True)
            ],
            directory / "contact-sheet.png",
            probes=[i.probe for i in ready] if ready else None,
            prepared=[i.sheet_row for i in ready if i.sheet_row is not None],
        )
    steps["contact_sheet_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    write_sidecars(result, narrative, plan, clips)  # poster.png and master.otio, for review and editing
    steps["sidecars_s"] = time.monotonic() - t0
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
                paid_by_run=c.paid_by,
            )
            for c in clips
        ],
        qc=qc.model_dump(mode="json"),
        duration_s=result.duration_s,
        loudness_lufs=result.loudness.integrated_lufs,
        timings=Timings(started_at=started_at, finished_at=datetime.now(UTC), steps=steps),
    )
    write_manifest(manifest, directory / "manifest.json")
    record = {"inputs_sha256": digest, "master_sha256": result.sha256}
    (directory / INPUTS_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
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
