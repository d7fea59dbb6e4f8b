"""S3 settings of storage (the archive, shared clips, s3:// scripts), read from the environment (prefix ``KLINGFLOW_S3_``).

Order of precedence: keyword arguments to :class:`S3Settings`, then environment variables, then
the defaults below. Credentials are *not* settings: boto3 finds them through the standard AWS
chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``
and ``~/.aws``, SSO, instance and container roles), so no secret ever passes through this
model, its ``repr`` or a log line.

======================================  ==============  ===========================================
variable                                default         meaning
======================================  ==============  ===========================================
``KLINGFLOW_S3_ENDPOINT_URL``           (AWS)           an S3-compatible store, e.g. SeaweedFS
``KLINGFLOW_S3_REGION``                 chain/us-east-1 signing region
``KLINGFLOW_S3_ADDRESSING_STYLE``       path if endpoint ``path``, ``virtual`` or ``auto``
``KLINGFLOW_S3_MULTIPART_THRESHOLD``    64 MiB          files at least this large go multipart
``KLINGFLOW_S3_MULTIPART_CHUNKSIZE``    16 MiB          part size (≥ 5 MiB; raised to fit 10,000)
``KLINGFLOW_S3_MAX_CONCURRENCY``        4               parts uploaded at once
``KLINGFLOW_S3_MAX_ATTEMPTS``           5               attempts per request (botocore retries)
``KLINGFLOW_S3_CONNECT_TIMEOUT``        10              seconds
``KLINGFLOW_S3_READ_TIMEOUT``           60              seconds
======================================  ==============  ===========================================
"""

from __future__ import annotations

from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError

MIB: Final = 1024 * 1024
#: S3's limits on multipart uploads (AWS documents the same for every compatible store we use).
MIN_PART_SIZE: Final = 5 * MIB
MAX_PART_SIZE: Final = 5 * 1024 * MIB
MAX_PARTS: Final = 10_000

AddressingStyle = Literal["auto", "path", "virtual"]


class S3Settings(BaseSettings):
    """How to reach S3 (or a compatible store) and how to upload to it."""

    model_config = SettingsConfigDict(env_prefix="KLINGFLOW_S3_", extra="ignore", frozen=True)

    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint; None = AWS")
    region: str | None = Field(default=None, description="signing region; None = the AWS chain's")
    addressing_style: AddressingStyle | None = Field(
        default=None, description="None = path for a custom endpoint, else boto3's auto"
    )
    multipart_threshold: int = Field(
        default=64 * MIB, ge=MIN_PART_SIZE, description="files at least this large (bytes) go multipart"
    )
    multipart_chunksize: int = Field(
        default=16 * MIB,
        ge=MIN_PART_SIZE,
        le=MAX_PART_SIZE,
        description="part size in bytes (≥ 5 MiB; raised to fit 10,000 parts)",
    )
    max_concurrency: int = Field(default=4, ge=1, le=64, description="parts uploaded at once")
    max_attempts: int = Field(default=5, ge=1, le=20, description="attempts per request (botocore retries)")
    connect_timeout: float = Field(default=10.0, gt=0, description="seconds to connect")
    read_timeout: float = Field(default=60.0, gt=0, description="seconds to wait for an answer")

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, value: str | None) -> str | None:
        # A URL with user:password@ would carry a secret into every repr and log line.
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8333")
        if parts.username or parts.password:
            raise ValueError("must not contain credentials; use the AWS credential chain")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _threshold_holds_a_part(self) -> S3Settings:
        if self.multipart_threshold < self.multipart_chunksize:
            raise ValueError("multipart_threshold must be at least multipart_chunksize")
        return self

    @property
    def custom_endpoint(self) -> bool:
        """True when talking to an S3-compatible store rather than AWS itself."""
        return self.endpoint_url is not None

    @property
    def effective_addressing_style(self) -> AddressingStyle:
        """Path style for custom endpoints (bucket names are not DNS names there), else auto."""
        if self.addressing_style is not None:
            return self.addressing_style
        return "path" if self.custom_endpoint else "auto"

    def part_size_for(self, size: int) -> int:
        """The part size for a file of ``size`` bytes: the configured one, raised to fit 10,000."""
        needed = -(-size // MAX_PARTS)  # ceiling division
        return max(self.multipart_chunksize, needed)


def load_s3_settings(**overrides: Any) -> S3Settings:
    """Read :class:`S3Settings` from the environment; bad values become one ConfigError."""
    try:
        return S3Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"KLINGFLOW_S3_{'.'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid S3 settings: {problems}") from exc
