"""Fixtures of the script tests: the archive tests' S3 server, for scripts read from ``s3://``.

Imported rather than moved, so the archive tests keep theirs as they are; pytest starts this
package's SeaweedFS (once per session) only when a test here asks for it.
"""

from __future__ import annotations

from ..archive.conftest import (  # noqa: F401  (fixtures, found by pytest under these names)
    _isolated_aws_environment,
    seaweedfs,
    seaweedfs_server,
)
