"""Settings of a render run, from the environment (``KLINGFLOW_*``) and command-line flags.

Precedence, highest first: flags (keyword arguments), environment variables, these defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError


class RunSettings(BaseSettings):
    """How runs execute: where their state lives, provider limits, retries, the sandbox."""

    model_config = SettingsConfigDict(env_prefix="KLINGFLOW_", extra="ignore", frozen=True)

    #: Working directories of runs: ``{runs_dir}/{run_id}/`` (clips, frames, masters, jobs.db).
    runs_dir: Path = Path(".klingflow/runs")
    #: SQLAlchemy URL of the job store; default: SQLite in the run's directory. A shared URL
    #: (e.g. postgresql+psycopg://...) lets several workers share jobs and the spend ledger.
    store_url: str | None = None
    #: Shared storage for intermediate clips (``s3://bucket/prefix`` or a directory every worker
    #: mounts): with several workers, whichever resumes a run finds the clips there to stitch.
    shared_url: str | None = None
    #: Requests queued or running at the provider at once, across every run sharing the limit.
    max_in_flight: int = Field(default=8, ge=1)
    #: Submits per second to the provider (a token bucket of ``submit_burst``).
    submit_rate_per_s: float = Field(default=2.0, gt=0)
    submit_burst: int = Field(default=4, ge=1)
    #: Regenerations of a failed generation (while the budget allows).
    max_regenerations: int = Field(default=2, ge=0)
    #: Prefect global concurrency limits (shared by every run on one Prefect server); default:
    #: on when PREFECT_API_URL names a server, off in Prefect's ephemeral mode.
    global_limits: bool | None = None
    #: An already running sandbox (``klingflow sandbox serve``) instead of an in-process one.
    sandbox_url: str | None = None
    sandbox_latency_scale: float = Field(default=0.02, ge=0)
    sandbox_render_scale: float = Field(default=1.0, gt=0, le=1)
    #: How image inputs reach a real provider: ``data-uri``, ``s3`` or ``auto`` (S3 when one is
    #: configured, else data URIs); see :mod:`pipeline.providers.images`.
    image_transport: Literal["data-uri", "s3", "auto"] = "auto"


def load_run_settings(**overrides: object) -> RunSettings:
    """Settings from the environment with ``overrides`` (flags) on top; ConfigError if invalid."""
    try:
        return RunSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid run settings: {problems}") from exc
