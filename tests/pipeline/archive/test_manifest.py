"""pipeline.archive.manifest: what it holds, versions, and that no secret gets in."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

import pipeline
from pipeline.archive.archiver import archive_run
from pipeline.archive.manifest import (
    Manifest,
    Timings,
    assert_no_secrets,
    build_manifest,
    ffmpeg_version,
    load_manifest,
    parse_ffmpeg_version,
    secret_values,
    write_manifest,
)
from pipeline.errors import ArchiveError, DiskFull, InputError, InputNotFound
from pipeline.hashing import sha256_file
from pipeline.storage.files import partial_path

from .conftest import segment

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "rc_live_0123456789abcdefSECRET"


def build(pass_dir: Path, **overrides: object) -> Manifest:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "script_name": "summer-launch",
        "script_sha256": "cd" * 32,
        "run_id": "r1",
        "narrative": "atlantic",
        "variant": "a",
        "pass_": "final",
        "plan": {"segments": [{"duration": 4}], "total_usd": "1.34"},
        "segments": [segment("atlantic", "a", "final", i) for i in range(2)],
        "qc": {"passed": True},
        "duration_s": 2.0,
        "loudness_lufs": -16.1,
        "timings": Timings(started_at=now, finished_at=now, steps={"generate": 12.5}),
    }
    values.update(overrides)
    return build_manifest(pass_dir, **values)  # type: ignore[arg-type]


@pytest.fixture
def pass_dir(tmp_path: Path, media: dict[str, Path]) -> Path:
    directory = tmp_path / "atlantic/a/final"
    directory.mkdir(parents=True)
    for name, source in (("master.mp4", "mp4"), ("master.srt", "srt"), ("contact-sheet.png", "png")):
        (directory / name).write_bytes(media[source].read_bytes())
    return directory


def test_manifest_holds_what_the_issue_lists(pass_dir: Path) -> None:
    manifest = build(pass_dir)
    write_manifest(manifest, pass_dir / "manifest.json")
    raw = json.loads((pass_dir / "manifest.json").read_text())

    assert raw["schema_version"] == 1
    assert raw["script"] == {"name": "summer-launch", "sha256": "cd" * 32}
    assert raw["pass"] == "final"
    assert raw["plan"]["total_usd"] == "1.34"
    assert raw["qc"] == {"passed": True}
    first = raw["segments"][0]
    assert set(first) == {
        "narrative", "variant", "pass", "index", "request_id", "tier", "duration_s", "audio", "seed",
        "prompt", "cost_usd", "clip_sha256", "paid_by_run", "take",
    }  # fmt: skip
    assert first["paid_by_run"] is None  # bought by this run, not taken from the clip library
    assert first["take"] is None and raw["take"] is None  # the first take (no reroll)
    assert first["cost_usd"] == "0.672"  # a decimal string, exact
    assert raw["master"]["sha256"] == sha256_file(pass_dir / "master.mp4")
    assert raw["master"]["size_bytes"] == (pass_dir / "master.mp4").stat().st_size
    assert raw["master"]["loudness_lufs"] == -16.1
    assert {f["name"]: f["sha256"] for f in raw["files"]} == {
        "master.srt": sha256_file(pass_dir / "master.srt"),
        "contact-sheet.png": sha256_file(pass_dir / "contact-sheet.png"),
    }
    assert raw["versions"]["klingflow"] == pipeline.__version__
    assert raw["versions"]["prefect"] == importlib.metadata.version("prefect")
    assert raw["timings"]["steps"] == {"generate": 12.5}
    assert load_manifest(pass_dir / "manifest.json") == manifest
    assert str(manifest.cost_usd) == "1.344"


def test_ffmpeg_version_is_the_installed_one() -> None:
    banner = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
    assert ffmpeg_version() == banner.split()[2]


@pytest.mark.parametrize(
    ("banner", "expected"),
    [
        ("ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 the FFmpeg developers\n", "5.1.6-0+deb12u1"),
        ("ffmpeg version n7.1 Copyright", "n7.1"),
        ("ffprobe version 5.1", None),
        ("", None),
    ],
)
def test_parse_ffmpeg_version(banner: str, expected: str | None) -> None:
    assert parse_ffmpeg_version(banner) == expected


def test_prefect_is_not_imported() -> None:
    code = (
        "import sys; from pipeline.archive.manifest import collect_versions; "
        "import pipeline.archive.archiver, pipeline.archive.staging, pipeline.cli; "
        "v = collect_versions(); assert v.prefect, v; "
        "assert 'prefect' not in sys.modules, 'prefect was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_no_secret_in_a_manifest(pass_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "TESTKEYID0EXAMPLE0NOTREAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("RUNCOMFY_TOKEN", TOKEN)

    write_manifest(build(pass_dir), pass_dir / "manifest.json")

    text = (pass_dir / "manifest.json").read_text()
    assert SECRET not in text
    assert TOKEN not in text
    assert "TESTKEYID0EXAMPLE0NOTREAL" not in text


def test_a_secret_handed_in_is_refused_without_echoing_it(
    pass_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_TOKEN", TOKEN)
    manifest = build(pass_dir, plan={"provider": {"headers": {"Authorization": f"Bearer {TOKEN}"}}})

    with pytest.raises(ArchiveError, match=r"\$RUNCOMFY_TOKEN") as caught:
        write_manifest(manifest, pass_dir / "manifest.json")

    assert TOKEN not in str(caught.value)
    assert not (pass_dir / "manifest.json").exists()


def test_a_presigned_url_is_refused(pass_dir: Path) -> None:
    url = "https://b.s3.amazonaws.com/_staging/x.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc"
    with pytest.raises(ArchiveError, match="signed URL"):
        build(pass_dir, plan={"start_image": url}).to_json()


def test_secret_detection_by_name() -> None:
    env = {
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "RUNCOMFY_TOKEN": TOKEN,
        "GITHUB_TOKEN": "short",
        "AWS_SHARED_CREDENTIALS_FILE": "/root/.aws/credentials",
        "HOME": "/root/home/dir",
    }
    assert set(secret_values(env)) == {"AWS_SECRET_ACCESS_KEY", "RUNCOMFY_TOKEN"}
    assert_no_secrets("no secrets here", what="x", environ=env)


def test_archiver_refuses_a_manifest_with_a_secret(
    make_run: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = make_run(masters=(("atlantic", "a", "final"),))
    manifest_path = run_dir / "atlantic/a/final/manifest.json"
    raw = json.loads(manifest_path.read_text())
    raw["plan"]["note"] = TOKEN  # written by hand, or by an older tool
    manifest_path.write_text(json.dumps(raw))
    monkeypatch.setenv("RUNCOMFY_TOKEN", TOKEN)

    report = archive_run(run_dir, str(tmp_path / "renders"))

    (refused,) = report.refused
    assert "RUNCOMFY_TOKEN" in str(refused.error)
    assert not (tmp_path / "renders").joinpath("summer-launch").exists()


def test_write_manifest_on_a_full_disk_keeps_the_old_one(pass_dir: Path) -> None:
    target = pass_dir / "manifest.json"
    target.write_text("previous")
    partial_path(target).symlink_to("/dev/full")

    with pytest.raises(DiskFull):
        write_manifest(build(pass_dir), target)

    assert target.read_text() == "previous"
    assert not partial_path(target).exists()


def test_invalid_manifests(tmp_path: Path, pass_dir: Path) -> None:
    with pytest.raises(InputNotFound, match="not finished"):
        load_manifest(tmp_path / "manifest.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 2, "run_id": "r"}))
    with pytest.raises(InputError, match="schema_version"):
        load_manifest(bad)
    with pytest.raises(InputError, match="sha256"):
        build(pass_dir, script_sha256="not-a-hash")
    with pytest.raises(InputNotFound):
        build(tmp_path / "empty")
