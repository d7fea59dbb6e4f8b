"""Where a run keeps its files: one directory per run, laid out for resuming and archiving.

::

    {runs_dir}/{run_id}/
        jobs.db                                  the job store (when SQLite)
        clips/{narrative}/{variant}/{pass}/seg-000.mp4
        frames/{narrative}/{variant}/{pass}/seg-000-last.png
        masters/run.json                         the RUN_DIR that ``klingflow archive`` takes
        masters/{narrative}/{variant}/{pass}/master.mp4, master.srt, contact-sheet.png, manifest.json
        masters/report.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.planning.plan import Pass

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_run_id(script_name: str, script_sha256: str) -> str:
    """``{script}-{first 10 hex of the script's sha256}``: running the same file again resumes."""
    return f"{script_name}-{script_sha256[:10]}"


def script_reference(file: str) -> str:
    """How a run records its script: an ``s3://`` URI as it is, a local path made absolute."""
    return file if file.startswith("s3://") else str(Path(file).absolute())


def check_run_id(run_id: str) -> str:
    """A run id usable as a directory name and archive key part."""
    if not run_id or _UNSAFE.search(run_id) or run_id.startswith("."):
        from pipeline.errors import ConfigError

        raise ConfigError(f"run id {run_id!r} must be letters, digits, '.', '-' or '_'")
    return run_id


@dataclass(frozen=True)
class RunLayout:
    """The files of one run."""

    root: Path

    @property
    def db_url(self) -> str:
        """The default job store of this run (SQLite)."""
        return f"sqlite:///{self.root / 'jobs.db'}"

    @property
    def masters_dir(self) -> Path:
        """The run directory handed to the archiver."""
        return self.root / "masters"

    @property
    def report(self) -> Path:
        """The run's HTML report."""
        return self.masters_dir / "report.html"

    def remove_partial_downloads(self) -> list[Path]:
        """Remove the ``.*.part`` files a killed run left among its clips (a download cut short).

        Only safe while holding the run's lock: then no other process is downloading here.
        """
        clips = self.root / "clips"
        removed = sorted(clips.rglob(".*.part")) if clips.is_dir() else []
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def clip(self, narrative: str, variant: str, pass_: Pass, segment: int) -> Path:
        """Where a segment's clip is downloaded."""
        return self.root / "clips" / narrative / variant / pass_ / f"seg-{segment:03d}.mp4"

    def last_frame(self, narrative: str, variant: str, pass_: Pass, segment: int) -> Path:
        """The last frame of a segment (the next segment's start under ``continuity: chain``)."""
        return self.root / "frames" / narrative / variant / pass_ / f"seg-{segment:03d}-last.png"

    def master_dir(self, narrative: str, variant: str, pass_: Pass) -> Path:
        """Where a master and its sidecars are written."""
        return self.masters_dir / narrative / variant / pass_
