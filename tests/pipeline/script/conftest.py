"""Fixtures of the script tests: the archive tests' isolation from the machine's AWS settings.

The S3 servers (``seaweedfs``, for scripts read from ``s3://``) are the suite's, in
``tests/conftest.py``; pytest starts one per session only when a test here asks for it.
"""

from __future__ import annotations

from ..archive.conftest import _isolated_aws_environment  # noqa: F401  (autouse, found by pytest by name)
