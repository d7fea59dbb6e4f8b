"""The sandbox's knobs: latency, limits, faults, rendering, billing."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pipeline.errors import ConfigError


class FaultConfig(BaseModel):
    """Rates (0–1) of injected faults; each is drawn independently per HTTP call or job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: API answers 429 + Retry-After before doing anything.
    rate_limit: float = Field(default=0.0, ge=0, le=1)
    #: API answers 500/502/503 before doing anything (a submit creates nothing).
    server_error: float = Field(default=0.0, ge=0, le=1)
    #: API answers HTTP 200 with an ``error_code`` body (GET calls only).
    error_in_200: float = Field(default=0.0, ge=0, le=1)
    #: The connection drops after the work was done (a submit's request *is* created).
    drop: float = Field(default=0.0, ge=0, le=1)
    #: Only a submit's answer is lost, after its task was created (Kling's API dialect).
    submit_drop: float = Field(default=0.0, ge=0, le=1)
    #: A job ends ``failed`` (never charged).
    fail: float = Field(default=0.0, ge=0, le=1)
    #: A download stops half-way (Content-Length announced in full).
    truncate: float = Field(default=0.0, ge=0, le=1)
    #: A download delivers garbled bytes (the MP4 header is zeroed; length unchanged).
    corrupt: float = Field(default=0.0, ge=0, le=1)
    #: A download is delivered in small chunks with ``slow_delay_s`` between them.
    slow: float = Field(default=0.0, ge=0, le=1)
    slow_delay_s: float = Field(default=0.2, ge=0)
    #: Seed of the fault dice, so a run can be reproduced.
    seed: int = 0

    @classmethod
    def uniform(cls, rate: float, *, seed: int = 0) -> FaultConfig:
        """Every fault kind at the same ``rate`` (the 20%-everything rehearsal)."""
        return cls(
            rate_limit=rate,
            server_error=rate,
            error_in_200=rate,
            drop=rate,
            submit_drop=rate,
            fail=rate,
            truncate=rate,
            corrupt=rate,
            slow=rate,
            seed=seed,
        )


class SandboxConfig(BaseModel):
    """How the sandbox behaves. Defaults: fast latency, no faults, full-size pictures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Multiplies the modelled queue and render times (1.0 = as slow as the hosted service).
    latency_scale: float = Field(default=0.02, ge=0)
    #: Spread of the modelled render time: ×U(1 − j, 1 + j), so the poller is not flattered.
    latency_jitter: float = Field(default=0.3, ge=0, lt=1)
    #: Parallel "GPUs": jobs beyond this many wait in the queue.
    slots: int = Field(default=4, ge=1)
    #: Picture size multiplier (1.0 = the tier's real resolution); small values for bulk tests.
    render_scale: float = Field(default=1.0, gt=0, le=1)
    render_workers: int = Field(default=1, ge=1)
    render_timeout_s: float = Field(default=600.0, gt=0)
    fps: int = Field(default=24, ge=1)
    #: Submits per second (token bucket) and burst; beyond that 429 + Retry-After.
    submit_rate_per_s: float = Field(default=50.0, gt=0)
    submit_burst: int = Field(default=50, ge=1)
    #: Requests queued or running at once; beyond that a submit gets 429 + Retry-After.
    max_in_flight: int = Field(default=64, ge=1)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    #: When set, requests must carry ``Authorization: Bearer <token>`` (401 without, 403 wrong).
    token: SecretStr | None = None
    #: Kling's API dialect: the key pair whose JWTs it accepts (HS256, issuer the access key).
    #: Unset: that dialect takes any request unless ``realistic``, which then refuses them all.
    kling_access_key: str | None = None
    kling_secret_key: SecretStr | None = None
    #: When set, a submit that would take accepted costs above this answers 402 / 400002.
    balance_usd: Decimal | None = None
    #: Where a result lists its video: ``output.video`` (string) or ``output.videos`` (list).
    output_field: Literal["video", "videos"] = "video"
    #: Behave like the hosted API rather than conveniently: a required token, each model's
    #: strict input schema, images only as ``https://`` URLs or ``data:`` URIs (never sandbox
    #: uploads), no upload endpoint. See :mod:`pipeline.providers.sandbox.app`.
    realistic: bool = False
    #: Where result videos point (``{cdn_base_url}/videos/{request_id}.mp4``), e.g.
    #: ``https://cdn-sandbox.runcomfy.net:8443``: a host name a client's CDN allow-list accepts,
    #: which the client maps to this server. Without a port, the port the client reached the
    #: API on is used. Default: this server's own origin (``/cdn/videos/...``).
    cdn_base_url: str | None = None

    @field_validator("cdn_base_url")
    @classmethod
    def _cdn_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"--cdn-base-url {value!r}: bad port") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--cdn-base-url {value!r}: expected an http(s) URL with a host name")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"--cdn-base-url {value!r}: no query, fragment or user name allowed")
        if parts.path == "/v1" or parts.path.startswith("/v1/"):
            # The video route would shadow the API's own paths.
            raise ConfigError(f"--cdn-base-url {value!r}: the path must not start with /v1")
        return value

    @model_validator(mode="after")
    def _realistic_needs_token(self) -> SandboxConfig:
        if self.realistic and (self.token is None or not self.token.get_secret_value().strip()):
            raise ConfigError(
                "a realistic sandbox requires a bearer token (--token or KLINGFLOW_SANDBOX_TOKEN)"
            )
        return self

    def video_base(self, origin: str, port: int | None) -> str:
        """Where result videos point, for a client that reached this server at ``origin``
        (``scheme://host[:port]``) on ``port`` (None: the scheme's default)."""
        if self.cdn_base_url is None:
            return f"{origin}/cdn"
        parts = urlsplit(self.cdn_base_url)
        if parts.port is not None or port is None:
            return self.cdn_base_url
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        return urlunsplit((parts.scheme, f"{host}:{port}", parts.path, "", ""))

    @property
    def cdn_path(self) -> str:
        """The path under which this server serves result videos (``…/videos/{id}.mp4``)."""
        return urlsplit(self.cdn_base_url).path if self.cdn_base_url else "/cdn"
