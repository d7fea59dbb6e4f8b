"""Settings of a render run, from the environment (``KLINGFLOW_*``) and command-line flags.

Precedence, highest first: flags (keyword arguments), environment variables, these defaults.
The ``run`` section of :class:`pipeline.settings.Settings`; the README's table of these variables
is generated from the descriptions below.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from pipeline.providers.sandbox.config import SandboxConfig


class RunSettings(BaseSettings):
    """How runs execute: where their state lives, provider limits, retries, the sandbox."""

    model_config = SettingsConfigDict(env_prefix="KLINGFLOW_", extra="ignore", frozen=True)

    runs_dir: Path = Field(
        default=Path(".klingflow/runs"),
        description="working directories of runs: `{runs_dir}/{run_id}/` (clips, frames, masters, jobs.db)",
    )
    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the job store and spend ledger (default: SQLite in the run's "
        "directory); a shared one (`postgresql+psycopg://…`) lets several workers share them",
    )
    shared_url: str | None = Field(
        default=None,
        description="shared storage for intermediate clips (`s3://bucket/prefix` or a directory every "
        "worker mounts): whichever worker resumes a run finds its clips there",
    )
    max_in_flight: int = Field(
        default=8,
        ge=1,
        description="requests queued or running at the provider at once, across the runs sharing the limit",
    )
    submit_rate_per_s: float = Field(
        default=2.0, gt=0, description="submits per second to the provider (a token bucket of `submit_burst`)"
    )
    submit_burst: int = Field(default=4, ge=1, description="submits allowed at once before the rate applies")
    max_regenerations: int = Field(
        default=2, ge=0, description="regenerations of a failed generation (while the budget allows)"
    )
    global_limits: bool | None = Field(
        default=None,
        description="Prefect global concurrency limits shared by every run on one server; default: on "
        "when `PREFECT_API_URL` names a server, off in Prefect's ephemeral mode",
    )
    sandbox_url: str | None = Field(
        default=None,
        description="an already running sandbox (`klingflow sandbox serve`) instead of an in-process one",
    )
    sandbox_latency_scale: float = Field(
        default=0.02,
        ge=0,
        description="the in-process sandbox's queue and render times (1.0 = the hosted service's)",
    )
    poll_latency_scale: float | None = Field(
        default=None,
        gt=0,
        description="how long the poller expects a generation to take (1.0 = the hosted service's "
        "modelled times); default 1.0 for a real provider, the sandbox's latency scale for the "
        "sandbox (set it for a `sandbox serve --realistic --latency-scale` reached as RunComfy)",
    )
    sandbox_render_scale: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="the in-process sandbox's picture size (1.0 = the tier's resolution)",
    )
    image_transport: Literal["data-uri", "s3", "auto"] = Field(
        default="auto",
        description="how image inputs reach a real provider: `data-uri`, `s3` or `auto` (S3 when one is "
        "configured, else data URIs)",
    )

    def sandbox_config(self) -> SandboxConfig:
        """The in-process sandbox a run starts when it uses one (its knobs are run settings)."""
        from pipeline.providers.sandbox.config import SandboxConfig

        return SandboxConfig(latency_scale=self.sandbox_latency_scale, render_scale=self.sandbox_render_scale)


def load_run_settings(**overrides: object) -> RunSettings:
    """Settings from the environment with ``overrides`` (flags) on top; ConfigError if invalid."""
    from pipeline.settings import load_section

    settings: RunSettings = load_section("run", RunSettings, overrides)
    return settings
