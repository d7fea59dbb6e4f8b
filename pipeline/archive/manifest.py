"""The provenance manifest: everything needed to know how a master was made and what it cost.

One ``manifest.json`` sits beside each master (``{narrative}/{variant}/{draft|final}/``) and is
archived last, so a manifest in the archive means its master is complete. It is JSON with
``schema_version: 1``; the plan and the QC report are JSON objects supplied by the caller, so
this module depends on neither the planner nor the checks.

Building one (the render flow does this after stitching and QC)::

    manifest = build_manifest(
        pass_dir,                       # holds master.mp4 (and master.srt, contact-sheet.png)
        script_name="summer-launch", script_sha256=sha256_file(script_path), run_id=run_id,
        narrative="atlantic", variant="a", pass_="final",
        plan=plan.model_dump(mode="json"), qc=qc_report.model_dump(mode="json"),
        segments=[SegmentRecord(...), ...], duration_s=12.0, loudness_lufs=-16.1,
        timings=Timings(started_at=t0, finished_at=t1, steps={"generate": 312.4}),
    )
    write_manifest(manifest, pass_dir / MANIFEST_NAME)

No secret may be in it: :func:`write_manifest` (and the archiver) refuse a manifest that holds
the value of a secret environment variable or a presigned URL.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

import pipeline
from pipeline.errors import ArchiveError, InputError, InputNotFound, MediaError
from pipeline.media.run import run_media_command
from pipeline.pricing import Tier
from pipeline.storage.files import sha256_of, write_file

SCHEMA_VERSION: Final = 1
MANIFEST_NAME: Final = "manifest.json"
MASTER_NAME: Final = "master.mp4"
#: Files that may sit beside a master, in the order they are archived (before the manifest).
SIDECAR_NAMES: Final = ("master.srt", "contact-sheet.png", "poster.png", "master.otio")

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Pass = Literal["draft", "final"]

# Environment variables whose values are secrets, by name; short values are not matched
# (they would flag ordinary words), nor variables that name a file (AWS_SHARED_CREDENTIALS_FILE).
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_KEY", re.IGNORECASE)
_NOT_SECRET_NAME = re.compile(r"_(FILE|PATH|DIR)$", re.IGNORECASE)
_MIN_SECRET_LEN: Final = 8
# Query parameters that make a URL a bearer credential (S3 presigned URLs).
_SIGNED_URL_MARKERS: Final = ("X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential", "Signature=")


class _Record(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class ScriptRecord(_Record):
    """The render script a master was made from."""

    name: str
    sha256: Sha256


class SegmentRecord(_Record):
    """One generation request that went into a master, and what it cost."""

    narrative: str
    variant: str
    pass_: Pass = Field(alias="pass")
    index: int = Field(ge=0, description="position of the segment in its master, from 0")
    request_id: str
    tier: Tier
    duration_s: int = Field(ge=1)
    audio: bool
    seed: int | None
    prompt: str
    cost_usd: Decimal = Field(ge=0, description="what the provider charged (JSON: a decimal string)")
    clip_sha256: Sha256
    paid_by_run: str | None = Field(
        default=None,
        description="the run that bought the clip, when this run reused it from the clip library "
        "(it paid nothing for it); null when this run bought it",
    )
    take: int | None = Field(
        default=None, ge=1, description="which take of the segment the master uses (null: the first)"
    )


class FileRecord(_Record):
    """A file archived beside the master (subtitles, contact sheet)."""

    name: str
    sha256: Sha256
    size_bytes: int = Field(ge=0)


class MasterRecord(FileRecord):
    """The stitched master."""

    duration_s: float = Field(ge=0)
    loudness_lufs: float | None


class Versions(_Record):
    """Versions of the software that made the master (None where unknown)."""

    klingflow: str
    prefect: str | None
    ffmpeg: str | None
    python: str


class Timings(_Record):
    """When the master's run started and finished, and seconds spent per step."""

    started_at: AwareDatetime
    finished_at: AwareDatetime
    steps: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)


class Manifest(_Record):
    """The provenance manifest of one master (``manifest.json``, schema version 1)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    script: ScriptRecord
    run_id: str
    narrative: str
    variant: str
    pass_: Pass = Field(alias="pass")
    plan: dict[str, Any]
    segments: list[SegmentRecord]
    qc: dict[str, Any]
    master: MasterRecord
    files: list[FileRecord] = Field(default_factory=list)
    versions: Versions
    timings: Timings
    take: int | None = Field(
        default=None,
        ge=1,
        description="the master's take (a reroll or `klingflow use` makes a new one); a take after "
        "the first is archived under `…/{pass}/take-N/`",
    )

    @property
    def cost_usd(self) -> Decimal:
        """Total charged for this master's segments."""
        return sum((s.cost_usd for s in self.segments), Decimal(0))

    def to_json(self) -> str:
        """The manifest as indented JSON; ArchiveError if it would contain a secret."""
        text = self.model_dump_json(indent=2) + "\n"
        assert_no_secrets(text, what="manifest")
        return text


# --- versions -------------------------------------------------------------------------------


def parse_ffmpeg_version(banner: str) -> str | None:
    """The version from ``ffmpeg -version``'s first line (``ffmpeg version 5.1.6-0+deb12u1 …``)."""
    match = re.match(r"\s*ffmpeg version (\S+)", banner)
    return match.group(1) if match else None


@functools.cache
def ffmpeg_version() -> str | None:
    """The installed ffmpeg's version, or None when ffmpeg is missing or says something odd."""
    try:
        proc = run_media_command(["ffmpeg", "-version"], timeout=30, what="ffmpeg -version")
    except MediaError:
        return None
    return parse_ffmpeg_version(proc.stdout)


def package_version(name: str) -> str | None:
    """An installed distribution's version from its metadata (never by importing it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_versions() -> Versions:
    """Versions of klingflow, Prefect (from package metadata: Prefect is not imported) and ffmpeg."""
    return Versions(
        klingflow=pipeline.__version__,
        prefect=package_version("prefect"),
        ffmpeg=ffmpeg_version(),
        python=platform.python_version(),
    )


# --- secrets --------------------------------------------------------------------------------


def secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that hold secrets, by name (values of 8 characters or more)."""
    env = os.environ if environ is None else environ
    return {
        k: v
        for k, v in env.items()
        if _SECRET_NAME.search(k) and not _NOT_SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN
    }


def assert_no_secrets(text: str, *, what: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise ArchiveError if ``text`` holds a secret's value or a presigned URL (never echoing it)."""
    for name, value in secret_values(environ).items():
        if value in text:
            raise ArchiveError(f"{what} contains the value of ${name}: refusing to write or archive it")
    for marker in _SIGNED_URL_MARKERS:
        if marker in text:
            raise ArchiveError(
                f"{what} contains a signed URL ({marker}), a credential: record the image's sha256 or "
                "s3:// key instead"
            )


# --- building, writing, reading -------------------------------------------------------------


def file_record(path: Path) -> FileRecord:
    """Name, sha256 and size of ``path``."""
    return FileRecord(
        name=path.name, sha256=sha256_of(path, what=f"reading {path}"), size_bytes=path.stat().st_size
    )


def build_manifest(
    pass_dir: Path,
    *,
    script_name: str,
    script_sha256: str,
    run_id: str,
    narrative: str,
    variant: str,
    pass_: Pass,
    plan: dict[str, Any],
    segments: list[SegmentRecord],
    qc: dict[str, Any],
    duration_s: float,
    loudness_lufs: float | None,
    timings: Timings,
) -> Manifest:
    """The manifest of the master in ``pass_dir``: hashes its master and sidecars, adds versions.

    Raises InputNotFound when ``pass_dir`` has no ``master.mp4``, InputError when a value is
    invalid.
    """
    master_path = pass_dir / MASTER_NAME
    if not master_path.is_file():
        raise InputNotFound(f"{master_path}: no such master")
    master = file_record(master_path)
    sidecars = [file_record(pass_dir / name) for name in SIDECAR_NAMES if (pass_dir / name).is_file()]
    try:
        return Manifest(
            script=ScriptRecord(name=script_name, sha256=script_sha256),
            run_id=run_id,
            narrative=narrative,
            variant=variant,
            pass_=pass_,
            plan=plan,
            segments=segments,
            qc=qc,
            master=MasterRecord(**master.model_dump(), duration_s=duration_s, loudness_lufs=loudness_lufs),
            files=sidecars,
            versions=collect_versions(),
            timings=timings,
        )
    except ValidationError as exc:
        raise InputError(f"{pass_dir}: invalid manifest: {_problems(exc)}") from exc


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write ``manifest`` to ``path`` atomically (DiskFull, ArchiveError on failure)."""
    data = manifest.to_json().encode()
    write_file(path, [data], replace=True)


def load_manifest(path: Path) -> Manifest:
    """Read and validate a ``manifest.json`` (InputNotFound, InputError)."""
    if not path.is_file():
        raise InputNotFound(f"{path}: no manifest (the master is not finished)")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise InputError(f"{path}: invalid manifest: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    # Field paths and messages only: input values could be long prompts (or worse).
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
