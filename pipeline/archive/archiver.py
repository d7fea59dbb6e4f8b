"""Archiving a finished run: every master verified in the archive, its manifest last.

:func:`archive_run` archives a finished run directory::

    RUN_DIR/run.json                                   {"script": ..., "run_id": ...}
    RUN_DIR/<narrative>/<variant>/<draft|final>/{master.mp4, master.srt, contact-sheet.png,
                                                 poster.png, master.otio, manifest.json}

to ``{prefix}/{script}/{run_id}/{narrative}/{variant}/{pass}/{file}`` of an object store
(:mod:`pipeline.storage`: an S3 bucket or a directory), each master's ``manifest.json`` last,
after every other file of that master is verified. The store does the verified, conditional,
never-overwriting writes; this module decides what goes where, and in which order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pipeline.archive.location import ArchiveLocation, LocalLocation, S3Location, parse_location
from pipeline.archive.manifest import (
    MANIFEST_NAME,
    MASTER_NAME,
    SIDECAR_NAMES,
    assert_no_secrets,
    load_manifest,
)
from pipeline.errors import (
    ArchiveAuthError,
    ArchiveError,
    ArchiveUnavailable,
    ConfigError,
    DiskFull,
    InputError,
    InputNotFound,
    KlingflowError,
)
from pipeline.storage.base import ObjectStore, Outcome, PutResult
from pipeline.storage.factory import open_store
from pipeline.storage.files import sha256_of
from pipeline.storage.local import LocalStore
from pipeline.storage.location import key_segment
from pipeline.storage.s3 import S3Store

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

    from pipeline.storage.settings import S3Settings

__all__ = [
    "Archive",
    "ArchiveReport",
    "FileReport",
    "LocalArchive",
    "Outcome",
    "PutResult",
    "RunInfo",
    "S3Archive",
    "archive_report",
    "archive_run",
    "find_pass_dirs",
    "open_archive",
    "read_run_info",
]

PASSES: Final = ("draft", "final")
RUN_INFO_NAME: Final = "run.json"

# The archive's names for the stores it delivers to (the same classes as storage's).
Archive = ObjectStore
S3Archive = S3Store
LocalArchive = LocalStore


def open_archive(
    location: ArchiveLocation | str | None,
    *,
    settings: S3Settings | None = None,
    client: S3Client | None = None,
    session: boto3.Session | None = None,
) -> S3Store | LocalStore:
    """The archive at ``location`` (``s3://bucket/prefix`` or a directory; default ``./renders``).

    See :func:`pipeline.storage.factory.open_store` for the S3 client it uses.
    """
    where = location if isinstance(location, S3Location | LocalLocation) else parse_location(location)
    return open_store(where, settings=settings, client=client, session=session)


# --- archiving a run ------------------------------------------------------------------------


@dataclass(frozen=True)
class FileReport:
    """What happened to one file of a run."""

    outcome: Outcome
    path: Path
    uri: str
    size: int = 0
    sha256: str = ""
    error: KlingflowError | None = None


@dataclass
class ArchiveReport:
    """What :func:`archive_run` did, file by file."""

    destination: str
    files: list[FileReport] = field(default_factory=list)
    masters_complete: list[Path] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many files had ``outcome``."""
        return sum(1 for f in self.files if f.outcome is outcome)

    @property
    def refused(self) -> list[FileReport]:
        """Files (or masters) that were not archived, with the reason."""
        return [f for f in self.files if f.outcome is Outcome.REFUSED]

    def raise_if_refused(self) -> None:
        """Raise the first refusal's error (its exit code is the CLI's) if anything was refused."""
        for report in self.refused:
            if report.error is not None:
                raise report.error


@dataclass(frozen=True)
class RunInfo:
    """The part of ``run.json`` the archive needs."""

    script: str
    run_id: str


@dataclass(frozen=True)
class _MasterFiles:
    pass_dir: Path
    narrative: str
    variant: str
    pass_: str
    files: tuple[tuple[Path, str], ...]  # (path, sha256), the manifest last
    #: Key segments under the pass: a take after the first has keys of its own (write-once).
    take: tuple[str, ...] = ()


def read_run_info(run_dir: Path) -> RunInfo:
    """Script name and run id from ``RUN_DIR/run.json`` (InputNotFound, InputError)."""
    path = run_dir / RUN_INFO_NAME
    if not path.is_file():
        raise InputNotFound(f"{path}: no such file ({run_dir} is not a run directory)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        script, run_id = raw["script"], raw["run_id"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: needs a JSON object with 'script' and 'run_id' ({exc})") from exc
    if not isinstance(script, str) or not isinstance(run_id, str):
        raise InputError(f"{path}: 'script' and 'run_id' must be strings")
    try:
        return RunInfo(key_segment(script, "script name"), key_segment(run_id, "run id"))
    except ConfigError as exc:
        raise InputError(f"{path}: {exc}") from exc


def find_pass_dirs(run_dir: Path) -> Iterator[Path]:
    """``RUN_DIR/<narrative>/<variant>/<draft|final>/`` directories holding a master or manifest."""
    for narrative in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for variant in sorted(p for p in narrative.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for pass_ in PASSES:
                pass_dir = variant / pass_
                if (pass_dir / MASTER_NAME).is_file() or (pass_dir / MANIFEST_NAME).is_file():
                    yield pass_dir


def _master_files(pass_dir: Path, info: RunInfo) -> _MasterFiles:
    """The files of one master with their sha256, checked against its manifest (refuse otherwise)."""
    manifest_path = pass_dir / MANIFEST_NAME
    manifest = load_manifest(manifest_path)
    assert_no_secrets(manifest_path.read_text(encoding="utf-8"), what=str(manifest_path))
    narrative, variant, pass_ = pass_dir.parent.parent.name, pass_dir.parent.name, pass_dir.name
    expected = {
        "script": (manifest.script.name, info.script),
        "run_id": (manifest.run_id, info.run_id),
        "narrative": (manifest.narrative, narrative),
        "variant": (manifest.variant, variant),
        "pass": (manifest.pass_, pass_),
    }
    for name, (in_manifest, actual) in expected.items():
        if in_manifest != actual:
            raise InputError(f"{manifest_path}: {name} is {in_manifest!r} but the run says {actual!r}")
    files = [_checked(pass_dir, manifest.master.name, manifest.master.sha256, manifest.master.size_bytes)]
    listed = {f.name for f in manifest.files} | {manifest.master.name}
    for record in manifest.files:
        files.append(_checked(pass_dir, record.name, record.sha256, record.size_bytes))
    for name in SIDECAR_NAMES:
        if (pass_dir / name).is_file() and name not in listed:
            raise ArchiveError(
                f"{pass_dir / name}: not in {manifest_path}; refusing to archive it unrecorded"
            )
    files.append((manifest_path, sha256_of(manifest_path, what=f"reading {manifest_path}")))
    take = (f"take-{manifest.take}",) if manifest.take and manifest.take > 1 else ()
    return _MasterFiles(pass_dir, narrative, variant, pass_, tuple(files), take)


def _checked(pass_dir: Path, name: str, sha256: str, size: int) -> tuple[Path, str]:
    path = pass_dir / key_segment(name, "file name")
    if not path.is_file():
        raise InputNotFound(f"{path}: listed in the manifest but missing")
    actual = sha256_of(path, what=f"reading {path}")
    if actual != sha256 or path.stat().st_size != size:
        raise ArchiveError(
            f"{path}: sha256 {actual} on disk does not match its manifest ({sha256}); refusing to archive it"
        )
    return path, actual


def archive_run(
    run_dir: str | Path,
    destination: Archive | ArchiveLocation | str | None = None,
    *,
    remove_local_masters: bool = False,
    progress: Callable[[FileReport], None] | None = None,
    settings: S3Settings | None = None,
) -> ArchiveReport:
    """Archive every finished master of ``run_dir`` to ``destination`` (default ``./renders``).

    Each master's files are checked against its manifest, stored and verified, the manifest
    last. A master that cannot be archived (a conflict, a mismatch, a failed verification) is
    reported as refused and the others go on; failures that would hit every master (credentials,
    an unreachable server or missing bucket, a full disk) raise at once. With
    ``remove_local_masters`` a ``master.mp4`` is deleted only after its whole master (manifest
    included) is verified in the archive. ``progress`` is called with each file's report.

    >>> report = archive_run("runs/summer-launch-0001", "s3://my-bucket/campaigns")  # doctest: +SKIP
    >>> report.raise_if_refused()  # doctest: +SKIP
    """
    run_path = Path(run_dir)
    if not run_path.is_dir():
        raise InputNotFound(f"{run_path}: no such run directory")
    info = read_run_info(run_path)
    pass_dirs = list(find_pass_dirs(run_path))
    if not pass_dirs:
        raise InputNotFound(
            f"{run_path}: no master to archive (expected <narrative>/<variant>/<draft|final>/{MASTER_NAME})"
        )
    if destination is None or isinstance(destination, str | S3Location | LocalLocation):
        archive = open_archive(destination, settings=settings)
        try:
            return _archive_masters(archive, info, pass_dirs, remove_local_masters, progress)
        finally:
            archive.close()  # we opened it
    return _archive_masters(destination, info, pass_dirs, remove_local_masters, progress)


def _archive_masters(
    archive: Archive,
    info: RunInfo,
    pass_dirs: list[Path],
    remove_local_masters: bool,
    progress: Callable[[FileReport], None] | None,
) -> ArchiveReport:
    archive.check()
    report = ArchiveReport(destination=str(archive.location))

    def record(entry: FileReport) -> None:
        report.files.append(entry)
        if progress is not None:
            progress(entry)

    for pass_dir in pass_dirs:
        try:
            master = _master_files(pass_dir, info)
        except (ArchiveAuthError, ArchiveUnavailable, DiskFull):
            raise
        except (ArchiveError, InputError) as exc:
            record(FileReport(Outcome.REFUSED, pass_dir, archive.location.uri(""), error=exc))
            continue
        complete = True
        for path, sha256 in master.files:
            key = archive.location.key(
                info.script,
                info.run_id,
                master.narrative,
                master.variant,
                master.pass_,
                *master.take,
                path.name,
            )
            try:
                result = archive.put(key, path, sha256)
            except (ArchiveAuthError, ArchiveUnavailable, DiskFull):
                raise
            except ArchiveError as exc:
                record(FileReport(Outcome.REFUSED, path, archive.location.uri(key), error=exc))
                complete = False
                break  # never archive the manifest of an incomplete master
            record(FileReport(result.outcome, path, result.uri, result.size, result.sha256))
        if complete:
            report.masters_complete.append(pass_dir)
            if remove_local_masters:
                (pass_dir / MASTER_NAME).unlink(missing_ok=True)
    return report


def archive_report(
    run_dir: str | Path,
    report: Path,
    destination: ArchiveLocation | str | None,
    *,
    name: str,
    settings: S3Settings | None = None,
) -> FileReport:
    """Archive the run's review page as ``{prefix}/{script}/{run_id}/{name}``, beside the masters
    its relative links point to. The archive never overwrites, so each rerun passes a new ``name``
    (an identical page already there is reported as present)."""
    info = read_run_info(Path(run_dir))
    archive = open_archive(destination, settings=settings)
    try:
        archive.check()
        key = archive.location.key(info.script, info.run_id, key_segment(name, "report name"))
        result = archive.put(key, report, sha256_of(report, what=f"reading {report}"))
    finally:
        archive.close()
    return FileReport(result.outcome, report, result.uri, result.size, result.sha256)
