"""pipeline.storage.factory: the one place that picks a store, and boto3 only for S3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.storage.factory import open_store
from pipeline.storage.local import LocalStore
from pipeline.storage.location import LocalLocation, S3Location
from pipeline.storage.s3 import S3Store

from ...conftest import S3Target


def test_open_store_picks_the_implementation(tmp_path: Path, moto_s3: S3Target) -> None:
    local = open_store(str(tmp_path))
    assert isinstance(local, LocalStore)
    assert local.location == LocalLocation(tmp_path)
    s3 = open_store("s3://klingflow-test/x", settings=moto_s3.settings(), session=moto_s3.session())
    assert isinstance(s3, S3Store)
    assert s3.location == S3Location("klingflow-test", "x")
    s3.close()


def test_a_malformed_location_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="only s3://bucket/prefix or a local directory"):
        open_store("gs://bucket/x")


def test_a_local_store_does_not_import_boto3(tmp_path: Path) -> None:
    code = (
        "import sys; from pipeline.storage.factory import open_store; "
        f"open_store({str(tmp_path)!r}).check(); "
        "import pipeline.storage.s3, pipeline.storage.errors; "
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
