"""The book of a run's takes (``{run}/takes.json``) and each master take's kept files.

What :mod:`pipeline.render.takes` writes when it rerolls or switches a segment, and what a rerun
of the run reads: a master that has takes keeps the one chosen (restored from
``masters/…/{pass}/.takes/take-M/``), never re-stitched from the run's first takes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.archive.manifest import MANIFEST_NAME, load_manifest, write_manifest
from pipeline.media.qc import QCReport
from pipeline.planning.plan import Pass
from pipeline.render.layout import RunLayout
from pipeline.render.masters import MasterOutcome

TAKES_FILE = "takes.json"
SNAPSHOTS = ".takes"


@dataclass(frozen=True)
class SegmentRef:
    """One segment of one master."""

    narrative: str
    variant: str
    pass_: Pass
    segment: int

    @property
    def master(self) -> str:
        """The master's key in the book."""
        return f"{self.narrative}/{self.variant}/{self.pass_}"


@dataclass(frozen=True)
class TakeRow:
    """One take as ``klingflow takes`` lists it."""

    ref: SegmentRef
    take: int
    seed: int | None
    request_id: str
    cost: Decimal
    current: bool


def load_book(root: Path) -> dict[str, Any]:
    """The run's takes (empty when nothing was ever rerolled)."""
    path = root / TAKES_FILE
    if not path.is_file():
        return {"masters": {}}
    book: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return book


def save_book(root: Path, book: dict[str, Any]) -> None:
    """Write the book atomically (a crash leaves the old one or the new one)."""
    partial = root / f".{TAKES_FILE}.part"
    partial.write_text(json.dumps(book, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, root / TAKES_FILE)


def snapshot(pass_dir: Path, take: int) -> None:
    """Keep the master's files of take ``take`` (once)."""
    target = pass_dir / SNAPSHOTS / f"take-{take}"
    if target.is_dir():
        return
    partial = pass_dir / SNAPSHOTS / f".take-{take}.part"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for f in pass_dir.iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, partial / f.name)
    os.replace(partial, target)


def restore(pass_dir: Path, take: int) -> None:
    """Put the kept files of master take ``take`` back in place of the current ones."""
    source = pass_dir / SNAPSHOTS / f"take-{take}"
    for f in pass_dir.iterdir():
        if f.is_file() and not f.name.startswith("."):
            f.unlink()
    for f in source.iterdir():
        shutil.copy2(f, pass_dir / f.name)


def master_entry(book: dict[str, Any], layout: RunLayout, ref: SegmentRef) -> dict[str, Any]:
    """The book's entry of ``ref``'s master, begun from its manifest (take 1 of every segment)."""
    masters: dict[str, Any] = book["masters"]
    if ref.master in masters:
        entry: dict[str, Any] = masters[ref.master]
        return entry
    pass_dir = layout.master_dir(ref.narrative, ref.variant, ref.pass_)
    manifest = load_manifest(pass_dir / MANIFEST_NAME)  # InputNotFound: no master to reroll
    segments = [
        [
            {
                "take": 1,
                "seed": s.seed,
                "request_id": s.request_id,
                "cost_usd": str(s.cost_usd),
                "sha256": s.clip_sha256,
                "file": str(layout.clip(ref.narrative, ref.variant, ref.pass_, s.index)),
            }
        ]
        for s in sorted(manifest.segments, key=lambda s: s.index)
    ]
    snapshot(pass_dir, 1)
    entry = {"segments": segments, "current": [1] * len(segments), "masters": [[1] * len(segments)]}
    masters[ref.master] = entry
    return entry


def list_takes(root: Path) -> list[TakeRow]:
    """Every recorded take of a run's rerolled masters, with its cost."""
    rows: list[TakeRow] = []
    for key, entry in sorted(load_book(root)["masters"].items()):
        narrative, variant, pass_ = key.split("/")
        for index, takes in enumerate(entry["segments"]):
            ref = SegmentRef(narrative, variant, pass_, index)
            for t in takes:
                current = entry["current"][index] == t["take"]
                rows.append(take_row(ref, t, current))
    return rows


def take_row(ref: SegmentRef, take: dict[str, Any], current: bool) -> TakeRow:
    return TakeRow(ref, take["take"], take["seed"], take["request_id"], Decimal(take["cost_usd"]), current)


def mark_takes(pass_dir: Path, number: int, takes: list[int]) -> None:
    """Record in the master's manifest its take and each segment's."""
    path = pass_dir / MANIFEST_NAME
    manifest = load_manifest(path)
    segments = [s.model_copy(update={"take": takes[s.index]}) for s in manifest.segments]
    write_manifest(manifest.model_copy(update={"take": number, "segments": segments}), path)


def has_takes(layout: RunLayout, narrative: str, variant: str, pass_: Pass) -> bool:
    """Whether this master was rerolled or switched (its takes are in the book)."""
    return f"{narrative}/{variant}/{pass_}" in load_book(layout.root)["masters"]


def current_master(layout: RunLayout, narrative: str, variant: str, pass_: Pass) -> MasterOutcome:
    """The master take in use, its kept files put back in place (byte for byte what was made)."""
    entry = load_book(layout.root)["masters"][f"{narrative}/{variant}/{pass_}"]
    number = entry["masters"].index(entry["current"]) + 1
    pass_dir = layout.master_dir(narrative, variant, pass_)
    restore(pass_dir, number)
    manifest = load_manifest(pass_dir / MANIFEST_NAME)
    return MasterOutcome(
        narrative, variant, pass_, pass_dir, pass_dir / manifest.master.name, manifest.master.sha256,
        manifest.master.duration_s, manifest.master.loudness_lufs, QCReport.model_validate(manifest.qc),
    )  # fmt: skip
