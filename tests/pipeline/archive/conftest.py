"""Fixtures of the archive tests: finished runs to archive, and media to fill them.

The S3 servers (``seaweedfs``, ``moto_s3``, ``s3_target``, ``doomed_seaweedfs``) are the whole
suite's, in ``tests/conftest.py`` (built on ``pipeline/stack/s3.py``); their types and
credentials are imported here under the names the archive tests (and others) use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest

from pipeline.archive.manifest import SegmentRecord, Timings, build_manifest, write_manifest
from pipeline.planning.plan import Pass
from pipeline.stack.ports import free_ports
from pipeline.stack.s3 import ADMIN_KEY, ADMIN_SECRET, BUCKET, READER_KEY, READER_SECRET

from ...conftest import S3Target, SeaweedServer

__all__ = [
    "ADMIN_KEY",
    "ADMIN_SECRET",
    "BUCKET",
    "READER_KEY",
    "READER_SECRET",
    "S3Target",
    "SeaweedServer",
    "free_ports",
]


@pytest.fixture(autouse=True)
def _isolated_aws_environment(isolated_aws_environment: None) -> None:
    """No credentials, profiles or S3 settings leak in from the machine (see tests/conftest.py)."""


# --- media and runs -------------------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2 s 320x180 MP4 with audio, a PNG and an SRT, made once."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required (scripts/setup.sh installs it)")
    root = tmp_path_factory.mktemp("media")
    mp4, png, srt = root / "master.mp4", root / "contact-sheet.png", root / "master.srt"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=320x180:d=2:r=25",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(mp4),
    )  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90", "-frames:v", "1", str(png))
    srt.write_text("1\n00:00:00,000 --> 00:00:01,500\nThe next stop is the Atlantic Ocean!\n")
    return {"mp4": mp4, "png": png, "srt": srt}


SCRIPT_NAME = "summer-launch"


def segment(narrative: str, variant: str, pass_: Pass, index: int) -> SegmentRecord:
    """A plausible segment record."""
    return SegmentRecord(
        narrative=narrative,
        variant=variant,
        pass_=pass_,
        index=index,
        request_id=f"req-{narrative}-{variant}-{pass_}-{index}",
        tier="standard" if pass_ == "draft" else "pro",
        duration_s=4,
        audio=pass_ == "final",
        seed=7,
        prompt="@mara steers the boat through a storm, cinematic, natural light",
        cost_usd=Decimal("0.336") if pass_ == "draft" else Decimal("0.672"),
        clip_sha256=f"{index:064x}",
    )


def add_master(
    run_dir: Path, narrative: str, variant: str, pass_: Pass, media: dict[str, Path], *, sidecars: bool = True
) -> Path:
    """Write one finished master (files and manifest) into ``run_dir``; return its directory."""
    info = json.loads((run_dir / "run.json").read_text())
    pass_dir = run_dir / narrative / variant / pass_
    pass_dir.mkdir(parents=True)
    shutil.copyfile(media["mp4"], pass_dir / "master.mp4")
    if sidecars:
        shutil.copyfile(media["srt"], pass_dir / "master.srt")
        shutil.copyfile(media["png"], pass_dir / "contact-sheet.png")
    now = datetime.now(UTC)
    manifest = build_manifest(
        pass_dir,
        script_name=info["script"],
        script_sha256="ab" * 32,
        run_id=info["run_id"],
        narrative=narrative,
        variant=variant,
        pass_=pass_,
        plan={"segments": 2, "total_usd": "0.67"},
        segments=[segment(narrative, variant, pass_, i) for i in range(2)],
        qc={"passed": True, "checks": {"duration": "ok"}},
        duration_s=2.0,
        loudness_lufs=-16.2,
        timings=Timings(started_at=now, finished_at=now, steps={"generate": 1.5, "stitch": 0.2}),
    )
    write_manifest(manifest, pass_dir / "manifest.json")
    return pass_dir


@pytest.fixture
def make_run(tmp_path: Path, media: dict[str, Path]) -> Callable[..., Path]:
    """Build a finished run directory: ``make_run(masters=[(narrative, variant, pass), ...])``."""

    def build(
        masters: tuple[tuple[str, str, str], ...] = (("atlantic", "a", "draft"), ("atlantic", "a", "final")),
        run_id: str | None = None,
    ) -> Path:
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        run_dir = tmp_path / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({"script": SCRIPT_NAME, "run_id": run_id}))
        for narrative, variant, pass_ in masters:
            add_master(run_dir, narrative, variant, cast(Pass, pass_), media)
        return run_dir

    return build
