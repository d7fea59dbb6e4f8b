"""Helpers of the storage tests: observe a store's requests, write big files fast.

The S3 servers (``seaweedfs``, ``moto_s3``, ``s3_target``) are the suite's, in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.storage.s3 import S3Store
from pipeline.storage.settings import MIB


@pytest.fixture(autouse=True)
def _isolated_aws_environment(isolated_aws_environment: None) -> None:
    """No credentials, profiles or S3 settings leak in from the machine."""


def count_calls(store: S3Store, *operations: str) -> Counter[str]:
    """Count the S3 requests ``store`` sends per operation (each retry counts)."""
    counts: Counter[str] = Counter()
    for operation in operations:

        def handler(*, _op: str = operation, **_: Any) -> None:
            counts[_op] += 1

        store.client.meta.events.register(f"before-send.s3.{operation}", handler)
    return counts


def write_file_of(path: Path, size: int, seed: bytes = b"k") -> Path:
    """A file of ``size`` bytes made of a repeated 1 MiB block (fast to write, not all zeros)."""
    block = (seed * (MIB // len(seed) + 1))[: MIB - 7] + os.urandom(7)
    with path.open("wb") as stream:
        for _ in range(size // len(block)):
            stream.write(block)
        stream.write(block[: size % len(block)])
    return path
