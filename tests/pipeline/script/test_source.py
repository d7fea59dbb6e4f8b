"""Render scripts read from ``s3://``: copied with their assets, checked and planned as if local.

Against a real S3-compatible server on loopback (SeaweedFS, credentials checked).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.errors import (
    EXIT_CONFIG,
    EXIT_DATAERR,
    EXIT_NOINPUT,
    EXIT_NOPERM,
    EXIT_UNAVAILABLE,
    InputNotFound,
    ScriptError,
)
from pipeline.planning.plan import build_plan
from pipeline.script.loader import load_script
from pipeline.script.source import asset_key, fetch_script, parse_s3_uri

from ..archive.conftest import S3Target, free_ports
from .test_loader import BROKEN_DIR, expectations

SCRIPT = """\
version: 1
name: harbour
elements:
  mara:
    description: "woman in a yellow raincoat"
    images: [{image}]
narratives:
  - id: a
    start_image: {start}
    shots:
      - {{duration: 4, action: "@mara waves"}}
budget: {{limit_usd: 5}}
"""


@functools.cache
def raw_client(target: S3Target) -> Any:
    """A client independent of the code under test (one per server: each costs ~0.2 s to make)."""
    return target.raw_client()


def put(target: S3Target, key: str, body: bytes) -> None:
    """Write one object, not through the code under test."""
    raw_client(target).put_object(Bucket=target.bucket, Key=key, Body=body)


def upload_tree(target: S3Target, root: Path, prefix: str, names: tuple[str, ...] = ()) -> str:
    """Upload the files under ``root`` (or just ``names``) to ``prefix``; return ``s3://bucket/prefix``."""
    paths = [root / n for n in names] if names else sorted(p for p in root.rglob("*") if p.is_file())
    for path in paths:
        put(target, f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return f"s3://{target.bucket}/{prefix}"


def fresh_prefix() -> str:
    return f"scripts-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seaweedfs: S3Target) -> S3Target:
    """The environment a worker would have: the store, credentials, and a working directory."""
    monkeypatch.chdir(tmp_path)  # the default cache, .klingflow/scripts, goes here
    monkeypatch.setenv("KLINGFLOW_S3_ENDPOINT_URL", seaweedfs.endpoint)
    monkeypatch.setenv("KLINGFLOW_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    return seaweedfs


@pytest.fixture
def configs_uri(s3_env: S3Target, repo_root: Path) -> str:
    """``configs/`` (the example scripts and their assets) uploaded under a fresh prefix."""
    return upload_tree(s3_env, repo_root / "configs", fresh_prefix())


# --- as if local ------------------------------------------------------------------------------


def test_examples_from_s3_load_and_plan_like_their_local_copies(
    configs_uri: str, example_scripts: list[Path], tmp_path: Path
) -> None:
    for path in example_scripts:
        local = load_script(path)
        remote = load_script(f"{configs_uri}/{path.name}")
        assert remote.file == f"{configs_uri}/{path.name}"
        assert remote.sha256 == local.sha256  # so the default run id is the same too
        assert remote.script == local.script
        assert build_plan(remote.script) == build_plan(local.script)
    bucket_and_prefix = configs_uri.removeprefix("s3://")
    copy = tmp_path / ".klingflow/scripts" / bucket_and_prefix
    assert remote.base_dir == copy
    for asset in ("mara_front.jpg", "leo_front.jpg", "deck.png", "harbor.png"):
        original = example_scripts[0].parent / "assets" / asset
        assert (copy / "assets" / asset).read_bytes() == original.read_bytes()


def test_validate_and_plan_commands_take_s3_uris(
    configs_uri: str, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"{configs_uri}/long-form-story.yaml"
    assert main(["validate", uri]) == 0
    assert capsys.readouterr().out.strip() == "ok"
    assert main(["plan", uri, "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert main(["plan", str(repo_root / "configs/long-form-story.yaml"), "--json"]) == 0
    assert remote == json.loads(capsys.readouterr().out)
    assert main(["plan", uri]) == 0
    assert "Plan of long-form-story" in capsys.readouterr().out


def test_assets_may_sit_anywhere_in_the_bucket(s3_env: S3Target, repo_root: Path) -> None:
    prefix = fresh_prefix()
    png = (repo_root / "configs/assets/deck.png").read_bytes()
    put(s3_env, f"{prefix}/shared/deck.png", png)
    put(s3_env, f"{prefix}/campaigns/mara.png", png)
    script = SCRIPT.format(image="mara.png", start="../shared/deck.png")
    put(s3_env, f"{prefix}/campaigns/harbour.yaml", script.encode())
    loaded = load_script(f"s3://{s3_env.bucket}/{prefix}/campaigns/harbour.yaml")
    assert (loaded.base_dir / "../shared/deck.png").resolve().read_bytes() == png


# --- what a broken or incomplete script says ----------------------------------------------------


#: A sample of the broken scripts (each CLI run makes its own boto3 client, ~0.3 s): bad bytes,
#: bad YAML, a missing asset, several mistakes at once.
BROKEN_SAMPLE = ("13-missing-asset.yaml", "16-not-utf8.yaml", "17-yaml-syntax.yaml", "33-many-mistakes.yaml")


def test_broken_scripts_on_s3_are_reported_by_uri_line_and_path(
    s3_env: S3Target, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = upload_tree(s3_env, BROKEN_DIR, fresh_prefix(), BROKEN_SAMPLE)
    for name in BROKEN_SAMPLE:
        code = main(["validate", f"{uri}/{name}"])
        err = capsys.readouterr().err
        assert code == EXIT_DATAERR, err
        assert "Traceback" not in err
        expected = expectations(BROKEN_DIR / name)
        assert expected
        for line, rest in expected:
            assert f"{uri}/{name}:{line}: {rest}" in err, f"missing {line}: {rest!r} in:\n{err}"
        assert f"{uri}/{name}: {len(expected)} problem(s)" in err
        if name == "13-missing-asset.yaml":  # looked for in S3, beside the script
            assert f"file not found: assets/nope.jpg (looked for {uri}/assets/nope.jpg)" in err


def test_an_s3_script_cannot_use_files_of_the_machine_it_runs_on(s3_env: S3Target, tmp_path: Path) -> None:
    local_png = tmp_path / "local.png"
    local_png.write_bytes(b"\x89PNG")
    prefix = fresh_prefix()
    script = SCRIPT.format(image=local_png, start="../../../outside.png")
    put(s3_env, f"{prefix}/s.yaml", script.encode())
    uri = f"s3://{s3_env.bucket}/{prefix}/s.yaml"
    with pytest.raises(ScriptError) as info:
        load_script(uri)
    messages = [str(p) for p in info.value.problems]
    inside = f"must be a path relative to the script, inside s3://{s3_env.bucket}"
    assert messages == [
        f"{uri}:6: elements.mara.images[0]: {inside} (got {str(local_png)!r}): "
        f"a script read from s3://{s3_env.bucket} can only use files stored there",
        f"{uri}:9: narratives[0].start_image: {inside} (got '../../../outside.png'): "
        f"a script read from s3://{s3_env.bucket} can only use files stored there",
    ]


def test_missing_object_exits_66_naming_the_uri(s3_env: S3Target, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"s3://{s3_env.bucket}/{fresh_prefix()}/nope.yaml"
    assert main(["validate", uri]) == EXIT_NOINPUT
    err = capsys.readouterr().err
    assert f"error: {uri}: no such object (store: KLINGFLOW_S3_ENDPOINT_URL={s3_env.endpoint})" in err
    assert main(["plan", uri]) == EXIT_NOINPUT


def test_missing_bucket_exits_69_naming_the_store(
    s3_env: S3Target, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = "s3://no-such-bucket-kf/campaigns/s.yaml"
    assert main(["validate", uri]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err.replace("\n", " ")
    assert (
        f"error: reading {uri}: bucket no-such-bucket-kf does not exist; "
        f"check KLINGFLOW_S3_ENDPOINT_URL (now {s3_env.endpoint})"
    ) in err
    assert "Traceback" not in err


def test_no_credentials_exits_77_saying_what_to_set(
    s3_env: S3Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    uri = f"s3://{s3_env.bucket}/s.yaml"
    assert main(["validate", uri]) == EXIT_NOPERM
    err = capsys.readouterr().err
    assert f"error: reading {uri}: no AWS credentials found: set AWS_ACCESS_KEY_ID" in err
    assert "Traceback" not in err


def test_wrong_credentials_exit_77_without_the_secret(
    s3_env: S3Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "wrong-secret-that-must-stay-hidden-0123"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    prefix = fresh_prefix()
    put(s3_env, f"{prefix}/s.yaml", b"version: 1\n")
    uri = f"s3://{s3_env.bucket}/{prefix}/s.yaml"
    assert main(["validate", uri]) == EXIT_NOPERM
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"error: reading {uri}: access denied (SignatureDoesNotMatch)" in err
    assert "AWS_SECRET_ACCESS_KEY" in err
    assert secret not in err and s3_env.secret_key not in err


def test_unreachable_endpoint_exits_69_naming_the_setting(
    s3_env: S3Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (port,) = free_ports(1)  # nothing listens there
    monkeypatch.setenv("KLINGFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KLINGFLOW_S3_MAX_ATTEMPTS", "1")
    uri = f"s3://{s3_env.bucket}/s.yaml"
    assert main(["validate", uri]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"error: reading {uri}: the S3 server cannot be reached" in err
    assert f"check KLINGFLOW_S3_ENDPOINT_URL (now http://127.0.0.1:{port})" in err
    assert "Traceback" not in err and s3_env.secret_key not in err


def test_bad_s3_settings_exit_78(
    s3_env: S3Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLINGFLOW_S3_ENDPOINT_URL", "ftp://127.0.0.1")
    uri = f"s3://{s3_env.bucket}/s.yaml"
    assert main(["validate", uri]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"error: reading {uri}: invalid S3 settings: KLINGFLOW_S3_ENDPOINT_URL" in err


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://just-a-bucket", "names no object"),
        ("s3://a-bucket/campaigns/", "names no object"),
        ("s3://Not_A_Bucket/s.yaml", "is not a valid S3 bucket name"),
        ("s3://a-bucket/a/../s.yaml", "cannot be copied to a local file"),
        ("s3://a-bucket/a//s.yaml", "cannot be copied to a local file"),
    ],
)
def test_a_uri_that_names_no_script_is_not_found(uri: str, message: str) -> None:
    with pytest.raises(InputNotFound, match=message):
        fetch_script(uri)  # before any client is made: no settings or credentials needed


def test_uris_and_asset_keys() -> None:
    assert parse_s3_uri("S3://my-bucket/a/s.yaml").key == "a/s.yaml"
    assert asset_key("a/b/s.yaml", "assets/x.png") == "a/b/assets/x.png"
    assert asset_key("a/b/s.yaml", "./../x.png") == "a/x.png"
    assert asset_key("s.yaml", "../x.png") is None
    assert asset_key("a/s.yaml", "/etc/x.png") is None


# --- the local copy -------------------------------------------------------------------------


def test_local_references_are_used_as_they_are(repo_root: Path) -> None:
    source = fetch_script("configs/bulk-ab.yaml")
    assert source.path == Path("configs/bulk-ab.yaml") and source.mirror is None
    assert load_script(repo_root / "configs/bulk-ab.yaml").file == str(repo_root / "configs/bulk-ab.yaml")


def test_unchanged_objects_are_not_downloaded_again(
    s3_env: S3Target, repo_root: Path, tmp_path: Path
) -> None:
    prefix = fresh_prefix()
    png = (repo_root / "configs/assets/deck.png").read_bytes()
    put(s3_env, f"{prefix}/mara.png", png)
    put(s3_env, f"{prefix}/deck.png", png)
    put(s3_env, f"{prefix}/s.yaml", SCRIPT.format(image="mara.png", start="deck.png").encode())
    uri = f"s3://{s3_env.bucket}/{prefix}/s.yaml"
    cache, settings, session = tmp_path / "cache", s3_env.settings(), s3_env.session()

    def fetch() -> Path:
        return fetch_script(uri, cache_dir=cache, settings=settings, session=session).path

    script = fetch()
    assert script == cache / s3_env.bucket / prefix / "s.yaml"
    inodes = {p.name: p.stat().st_ino for p in script.parent.iterdir()}
    assert set(inodes) == {
        "s.yaml",
        "mara.png",
        "deck.png",
        ".s.yaml.s3.json",
        ".mara.png.s3.json",
        ".deck.png.s3.json",
    }

    fetch()  # a 304 for each: the very same files
    assert {p.name: p.stat().st_ino for p in script.parent.iterdir()} == inodes

    put(s3_env, f"{prefix}/mara.png", png + b"changed")  # changed in S3: downloaded again
    (script.parent / "deck.png").write_bytes(b"edited by hand")  # changed here: downloaded again
    fetch()
    assert (script.parent / "mara.png").read_bytes() == png + b"changed"
    assert (script.parent / "deck.png").read_bytes() == png
    assert script.stat().st_ino == inodes["s.yaml"]

    raw_client(s3_env).delete_object(Bucket=s3_env.bucket, Key=f"{prefix}/deck.png")
    fetch()  # a deleted asset leaves no copy behind that could pass the checks
    assert not (script.parent / "deck.png").exists()

    raw_client(s3_env).delete_object(Bucket=s3_env.bucket, Key=f"{prefix}/s.yaml")
    with pytest.raises(InputNotFound, match="no such object"):
        fetch()
    assert not script.exists()


def test_local_scripts_do_not_import_boto3(repo_root: Path) -> None:
    code = (
        "import sys; from pipeline.script.loader import load_script; "
        "load_script('configs/bulk-ab.yaml'); assert 'boto3' not in sys.modules, 'boto3 imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
