"""archive_run against a local directory, SeaweedFS and moto: verified, idempotent, refusing.

The stores themselves are tested in tests/pipeline/storage/.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.archive.archiver import (
    LocalArchive,
    Outcome,
    S3Archive,
    archive_report,
    archive_run,
    open_archive,
)
from pipeline.archive.location import LocalLocation, S3Location
from pipeline.archive.manifest import load_manifest
from pipeline.errors import (
    EXIT_CANTCREAT,
    EXIT_NOPERM,
    EXIT_UNAVAILABLE,
    ArchiveAuthError,
    ArchiveConflict,
    ArchiveError,
    ArchiveUnavailable,
    DiskFull,
    InputNotFound,
)
from pipeline.hashing import sha256_file
from pipeline.storage.files import partial_path
from pipeline.storage.s3client import make_s3_client
from pipeline.storage.settings import MIB

from ..storage.conftest import count_calls, write_file_of
from .conftest import S3Target, SeaweedServer

FILES_PER_MASTER = ("master.mp4", "master.srt", "contact-sheet.png", "manifest.json")


def archived_keys(run_dir: Path, prefix: str) -> list[tuple[Path, str]]:
    """(local file, expected key) for every file of every master in ``run_dir``."""
    info = json.loads((run_dir / "run.json").read_text())
    pairs = []
    for manifest in sorted(run_dir.rglob("manifest.json")):
        rel = manifest.parent.relative_to(run_dir).as_posix()
        for name in FILES_PER_MASTER:
            key = "/".join(p for p in (prefix, info["script"], info["run_id"], rel, name) if p)
            pairs.append((manifest.parent / name, key))
    return pairs


# --- local directory ------------------------------------------------------------------------


def test_local_archive_layout_and_hashes(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = make_run()
    dest = tmp_path / "renders"

    report = archive_run(run_dir, str(dest))

    assert report.count(Outcome.UPLOADED) == 8
    assert report.count(Outcome.REFUSED) == 0
    for local, key in archived_keys(run_dir, ""):
        assert sha256_file(dest / key) == sha256_file(local)
    for manifest_path in dest.rglob("manifest.json"):
        manifest = load_manifest(manifest_path)
        assert sha256_file(manifest_path.with_name("master.mp4")) == manifest.master.sha256
    assert not list(dest.rglob("*.partial"))


def test_manifest_is_archived_last_for_each_master(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = make_run()
    order: list[str] = []

    archive_run(run_dir, str(tmp_path / "renders"), progress=lambda e: order.append(e.path.name))

    assert order == list(FILES_PER_MASTER) * 2


def test_local_rearchive_is_a_no_op(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = make_run()
    dest = tmp_path / "renders"
    archive_run(run_dir, str(dest))
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}

    again = archive_run(run_dir, str(dest))

    assert again.count(Outcome.PRESENT) == 8
    assert again.count(Outcome.UPLOADED) == 0
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == mtimes


def redo_file(pass_dir: Path, name: str, content: bytes) -> None:
    """Replace a sidecar and record it in the manifest, as a re-render of that file would."""
    (pass_dir / name).write_bytes(content)
    manifest_path = pass_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for record in manifest["files"]:
        if record["name"] == name:
            record.update(sha256=sha256_file(pass_dir / name), size_bytes=len(content))
    manifest_path.write_text(json.dumps(manifest))


def test_local_changed_file_under_same_key_is_refused(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = make_run()
    dest = tmp_path / "renders"
    archive_run(run_dir, str(dest))
    archived = dest / "summer-launch" / run_dir.name / "atlantic/a/draft"
    before = {p.name: p.read_bytes() for p in archived.iterdir()}
    redo_file(run_dir / "atlantic/a/draft", "master.srt", b"1\n00:00:00,000 --> 00:00:01,000\nChanged.\n")

    report = archive_run(run_dir, str(dest))

    (refused,) = report.refused
    assert refused.path == run_dir / "atlantic/a/draft/master.srt"
    assert isinstance(refused.error, ArchiveConflict)
    assert refused.error.exit_code == EXIT_CANTCREAT
    # Neither the subtitles nor the manifest of that master were overwritten.
    assert {p.name: p.read_bytes() for p in archived.iterdir()} == before
    assert report.count(Outcome.PRESENT) == 1 + 4  # the draft's master.mp4, then the whole final
    with pytest.raises(ArchiveConflict, match="refusing to overwrite"):
        report.raise_if_refused()


def test_master_not_matching_its_manifest_is_refused_before_upload(
    make_run: Callable[..., Path], tmp_path: Path
) -> None:
    run_dir = make_run()
    master = run_dir / "atlantic/a/final/master.mp4"
    with master.open("ab") as stream:
        stream.write(b"tampered")
    dest = tmp_path / "renders"

    report = archive_run(run_dir, str(dest))

    (refused,) = report.refused
    assert refused.path == master.parent
    assert isinstance(refused.error, ArchiveError)
    assert "does not match its manifest" in str(refused.error)
    assert not (dest / "summer-launch").joinpath(run_dir.name, "atlantic/a/final").exists()
    assert report.count(Outcome.UPLOADED) == 4  # the draft master went on


def test_master_without_manifest_is_not_archived(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = make_run()
    (run_dir / "atlantic/a/final/manifest.json").unlink()

    report = archive_run(run_dir, str(tmp_path / "renders"))

    (refused,) = report.refused
    assert isinstance(refused.error, InputNotFound)
    assert len(report.masters_complete) == 1


def test_disk_full_is_reported_and_the_master_kept(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = make_run(masters=(("atlantic", "a", "final"),))
    dest = tmp_path / "renders"
    target = dest / "summer-launch" / run_dir.name / "atlantic/a/final/master.mp4"
    target.parent.mkdir(parents=True)
    # Where the copy is written before it is published: make that /dev/full (ENOSPC on write).
    partial_path(target).symlink_to("/dev/full")
    master = run_dir / "atlantic/a/final/master.mp4"
    before = sha256_file(master)

    with pytest.raises(DiskFull, match="no space left") as caught:
        archive_run(run_dir, str(dest), remove_local_masters=True)

    assert caught.value.exit_code == EXIT_CANTCREAT
    assert str(master) in str(caught.value)
    assert sha256_file(master) == before
    assert not target.exists()
    assert not partial_path(target).exists()


def test_remove_local_masters_only_after_verification(make_run: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = make_run()
    (run_dir / "atlantic/a/final/manifest.json").write_text("{}")  # the final is refused

    report = archive_run(run_dir, str(tmp_path / "renders"), remove_local_masters=True)

    assert report.masters_complete == [run_dir / "atlantic/a/draft"]
    assert not (run_dir / "atlantic/a/draft/master.mp4").exists()
    assert (run_dir / "atlantic/a/final/master.mp4").exists()


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound):
        archive_run(tmp_path / "missing", str(tmp_path / "renders"))
    with pytest.raises(InputNotFound, match=r"run\.json"):
        archive_run(tmp_path, str(tmp_path / "renders"))


def test_open_archive_picks_the_implementation(tmp_path: Path, moto_s3: S3Target) -> None:
    assert isinstance(open_archive(str(tmp_path)), LocalArchive)
    assert open_archive(None).location == LocalLocation(Path("renders"))
    s3 = open_archive("s3://klingflow-test/x", settings=moto_s3.settings(), session=moto_s3.session())
    assert isinstance(s3, S3Archive)
    assert s3.location == S3Location("klingflow-test", "x")


# --- S3: both servers -----------------------------------------------------------------------


def test_s3_archive_run_matches_manifest(make_run: Callable[..., Path], s3_target: S3Target) -> None:
    run_dir = make_run()
    archive = s3_target.archive()

    report = archive_run(run_dir, archive)

    assert report.count(Outcome.UPLOADED) == 8
    raw = s3_target.raw_client()
    for local, key in archived_keys(run_dir, archive.location.prefix):
        stored = raw.get_object(Bucket=s3_target.bucket, Key=key)
        body = stored["Body"].read()
        assert stored["Metadata"]["sha256"] == sha256_file(local)
        assert body == local.read_bytes()
        if local.name == "manifest.json":
            manifest = json.loads(body)
            master = raw.get_object(Bucket=s3_target.bucket, Key=key.replace("manifest.json", "master.mp4"))
            assert hashlib.sha256(master["Body"].read()).hexdigest() == manifest["master"]["sha256"]
    assert stored["ContentType"] == "application/json"


def test_s3_rearchive_uploads_nothing(make_run: Callable[..., Path], s3_target: S3Target) -> None:
    run_dir = make_run()
    archive = s3_target.archive()
    archive_run(run_dir, archive)
    calls = count_calls(archive, "PutObject", "CreateMultipartUpload", "UploadPart", "GetObject")

    again = archive_run(run_dir, archive)

    assert again.count(Outcome.PRESENT) == 8
    assert calls["PutObject"] == calls["CreateMultipartUpload"] == calls["UploadPart"] == 0
    assert calls["GetObject"] == 8  # each existing object is proven by its content, not its metadata


def test_s3_missing_bucket(make_run: Callable[..., Path], s3_target: S3Target) -> None:
    settings = s3_target.settings()
    archive = S3Archive(s3_target.client(), S3Location("no-such-bucket-here"), settings)

    with pytest.raises(ArchiveUnavailable, match="no-such-bucket-here does not exist") as caught:
        archive_run(make_run(), archive)

    assert caught.value.exit_code == EXIT_UNAVAILABLE


# --- S3: SeaweedFS only (credentials and digests checked) -----------------------------------


def test_wrong_credentials(make_run: Callable[..., Path], seaweedfs: S3Target) -> None:
    session = seaweedfs.session(secret_key="not-the-secret-key")
    client = make_s3_client(seaweedfs.settings(), session=session)
    archive = S3Archive(client, S3Location(seaweedfs.bucket, "x"), seaweedfs.settings())

    with pytest.raises(ArchiveAuthError, match="check the AWS credentials") as caught:
        archive_run(make_run(), archive)

    assert caught.value.exit_code == EXIT_NOPERM
    assert "not-the-secret-key" not in str(caught.value)


def test_server_going_away_mid_upload(
    make_run: Callable[..., Path], tmp_path: Path, doomed_seaweedfs: SeaweedServer
) -> None:
    target = doomed_seaweedfs.target
    archive = target.archive(
        multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2, max_attempts=3
    )
    run_dir = make_run(masters=(("atlantic", "a", "final"),))
    master = run_dir / "atlantic/a/final/master.mp4"
    # A bigger master: still valid for the archive as long as the manifest says so.
    write_file_of(master, 40 * MIB)
    manifest_path = master.with_name("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["master"].update(sha256=sha256_file(master), size_bytes=master.stat().st_size)
    manifest_path.write_text(json.dumps(manifest))
    before = sha256_file(master)
    sends: Counter[int] = Counter()

    def count_and_kill(request: Any, **_: Any) -> None:
        part = int(request.url.split("partNumber=")[1].split("&")[0])
        sends[part] += 1

    def kill_after_first_part(**_: Any) -> None:
        doomed_seaweedfs.kill()

    archive.client.meta.events.register("before-send.s3.UploadPart", count_and_kill)
    archive.client.meta.events.register("after-call.s3.UploadPart", kill_after_first_part)

    with pytest.raises(ArchiveUnavailable, match="cannot be reached") as caught:
        archive_run(run_dir, archive, remove_local_masters=True)

    assert caught.value.exit_code == EXIT_UNAVAILABLE
    assert f"the local copy is kept at {master}" in str(caught.value)
    assert sha256_file(master) == before
    assert max(sends.values()) == 3  # a failing part was tried max_attempts times


def test_partials_of_a_killed_archiver_are_removed_by_the_next_run(
    make_run: Callable[..., Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    run_dir = make_run()
    dest = tmp_path / "renders"
    archive_run(run_dir, str(dest))
    manifest = next(dest.rglob("manifest.json"))
    # What a SIGKILL mid-write leaves (the writer's finally never ran): partials named after a
    # process that no longer exists; and one of a live writer, which must be left alone.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = manifest.with_name(f".manifest.json.{int(dead.stdout)}.partial")
    stale.write_text("{")
    live = manifest.with_name(f".manifest.json.{os.getppid()}.partial")
    live.write_text("{")

    archive_run(run_dir, str(dest))

    assert not stale.exists()
    assert live.exists()


def test_no_secret_in_any_log_record(
    caplog: pytest.LogCaptureFixture, make_run: Callable[..., Path], seaweedfs: S3Target
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, botocore's debug output included
    archive = seaweedfs.archive()
    run_dir = make_run()

    archive_run(run_dir, archive)

    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert seaweedfs.secret_key not in caplog.text


def test_the_review_page_is_archived_beside_the_masters_under_a_new_key_each_run(
    make_run: Callable[..., Path], tmp_path: Path
) -> None:
    run_dir = make_run()
    info = json.loads((run_dir / "run.json").read_text())
    dest = tmp_path / "archive"
    page = run_dir / "report.html"
    page.write_text("<p>first</p>")
    first = archive_report(run_dir, page, str(dest), name="report-20261130T051300Z.html")
    assert first.outcome is Outcome.UPLOADED
    assert Path(first.uri) == dest / info["script"] / info["run_id"] / "report-20261130T051300Z.html"
    page.write_text("<p>rerun</p>")
    second = archive_report(run_dir, page, str(dest), name="report-20261130T061300Z.html")
    assert second.outcome is Outcome.UPLOADED and Path(first.uri).read_text() == "<p>first</p>"
    # Write-once: the same key with other content is refused, never overwritten.
    with pytest.raises(ArchiveConflict):
        archive_report(run_dir, page, str(dest), name="report-20261130T051300Z.html")
