"""``klingflow archive``: end to end through ``pipeline.cli.main``, exit codes from the error tree."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EXIT_CANTCREAT, EXIT_CONFIG, EXIT_NOINPUT, EXIT_NOPERM, EXIT_OK, EXIT_UNAVAILABLE

from .conftest import S3Target


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, seaweedfs: S3Target) -> S3Target:
    """Credentials and endpoint the way a user provides them: environment variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("KLINGFLOW_S3_ENDPOINT_URL", seaweedfs.endpoint)
    monkeypatch.setenv("KLINGFLOW_S3_MAX_ATTEMPTS", "2")
    return seaweedfs


def test_archive_to_s3_and_sha256s_match_the_manifest(
    make_run: Callable[..., Path], s3_env: S3Target, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make_run()
    prefix = f"cli-{uuid.uuid4().hex[:8]}"

    assert main(["archive", str(run_dir), "--to", f"s3://{s3_env.bucket}/{prefix}"]) == EXIT_OK

    out = capsys.readouterr().out
    assert out.count("uploaded ") == 8
    assert "8 uploaded, 0 already archived, 0 refused; 2 master(s) complete" in out
    raw = s3_env.raw_client()
    masters = 0
    for pass_ in ("draft", "final"):
        base = f"{prefix}/summer-launch/{run_dir.name}/atlantic/a/{pass_}"
        manifest_bytes = raw.get_object(Bucket=s3_env.bucket, Key=f"{base}/manifest.json")["Body"].read()
        assert manifest_bytes == (run_dir / f"atlantic/a/{pass_}/manifest.json").read_bytes()
        manifest = json.loads(manifest_bytes)
        for record in [manifest["master"], *manifest["files"]]:
            body = raw.get_object(Bucket=s3_env.bucket, Key=f"{base}/{record['name']}")["Body"].read()
            assert hashlib.sha256(body).hexdigest() == record["sha256"]
            assert len(body) == record["size_bytes"]
        masters += 1
    assert masters == 2

    assert main(["archive", str(run_dir), "--to", f"s3://{s3_env.bucket}/{prefix}"]) == EXIT_OK
    assert "0 uploaded, 8 already archived, 0 refused" in capsys.readouterr().out


def test_archive_to_the_default_local_directory(
    make_run: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = make_run()
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    assert main(["archive", str(run_dir)]) == EXIT_OK

    archived = workdir / "renders/summer-launch" / run_dir.name / "atlantic/a/final/master.mp4"
    assert archived.read_bytes() == (run_dir / "atlantic/a/final/master.mp4").read_bytes()


def test_wrong_credentials_exit_77(
    make_run: Callable[..., Path],
    s3_env: S3Target,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-not-the-key")

    assert main(["archive", str(make_run()), "--to", f"s3://{s3_env.bucket}/x"]) == EXIT_NOPERM

    captured = capsys.readouterr()
    assert "access denied" in captured.err
    assert "definitely-not-the-key" not in captured.err + captured.out


def test_missing_bucket_exit_69(
    make_run: Callable[..., Path], s3_env: S3Target, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["archive", str(make_run()), "--to", "s3://no-such-bucket/x"]) == EXIT_UNAVAILABLE
    assert "bucket no-such-bucket does not exist" in capsys.readouterr().err


def test_conflict_exit_73(
    make_run: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make_run(masters=(("atlantic", "a", "final"),))
    dest = tmp_path / "renders"
    assert main(["archive", str(run_dir), "--to", str(dest)]) == EXIT_OK
    (dest / "summer-launch" / run_dir.name / "atlantic/a/final/contact-sheet.png").write_bytes(b"other")

    assert main(["archive", str(run_dir), "--to", str(dest)]) == EXIT_CANTCREAT

    captured = capsys.readouterr()
    assert "refused" in captured.out
    assert "refusing to overwrite" in captured.err


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["archive", "/nonexistent/run"], EXIT_NOINPUT),
        (["archive", ".", "--to", "gs://bucket/x"], EXIT_CONFIG),
    ],
)
def test_bad_arguments(args: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"script": "s", "run_id": "r"}))
    (tmp_path / "n/v/final").mkdir(parents=True)
    (tmp_path / "n/v/final/master.mp4").write_bytes(b"x")
    assert main(args) == code
