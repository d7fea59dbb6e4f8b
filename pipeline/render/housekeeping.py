"""Housekeeping of the clip library: what it holds and saved, and pruning clips nobody uses.

``prune`` removes the *files* of clips older than a cut-off that no master's manifest (current or
a kept take, under any run directory beside the library) names by sha256; the library's records
stay, marked gone, so what was paid and saved is still told, and a request of that identity is
bought again rather than reused. Copies in shared storage are left to its own lifecycle rules.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pipeline.archive.manifest import MANIFEST_NAME, load_manifest
from pipeline.errors import InputError, KlingflowError
from pipeline.store.library import ClipLibrary

_AGE = re.compile(r"^(\d+)([hdw])$")
_UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``30d`` → seconds (units ``h``, ``d``, ``w``); InputError for anything else."""
    match = _AGE.match(text.strip())
    if match is None:
        raise InputError(f"--older-than {text!r}: expected a number and h, d or w, e.g. 30d")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def clips_in_masters(runs_dir: Path) -> set[str]:
    """The sha256 of every clip a master under ``runs_dir`` uses (kept takes included)."""
    used: set[str] = set()
    if not runs_dir.is_dir():
        return used
    for path in runs_dir.glob(f"*/masters/**/{MANIFEST_NAME}"):
        try:
            used.update(s.clip_sha256 for s in load_manifest(path).segments)
        except KlingflowError:
            continue  # a damaged manifest names nothing it could be trusted for
    return used


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed."""

    clips: int
    bytes: int
    kept_in_use: int


def prune(library: ClipLibrary, runs_dir: Path, older_than_s: float, *, now: float | None = None) -> Pruned:
    """Remove the files of library clips unused for ``older_than_s`` that no master uses."""
    cutoff = (now if now is not None else time.time()) - older_than_s
    used = clips_in_masters(runs_dir)
    removed = size = kept = 0
    for clip in library.all_clips():
        if clip.gone or clip.used_at > cutoff:
            continue
        if clip.sha256 in used:
            kept += 1
            continue
        path = Path(clip.file)
        if path.is_file():
            size += path.stat().st_size
            path.unlink()
        library.mark_gone(clip.identity)
        removed += 1
    return Pruned(removed, size, kept)


def saved_line(saved: Decimal, reuses: int) -> str:
    """How ``klingflow library`` says what reuse saved."""
    return f"${saved:,.2f} of requests reused ({reuses} reuse{'s' if reuses != 1 else ''})"
