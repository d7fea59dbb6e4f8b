"""Shared fixtures: instant stamina retries, a session-wide sandbox, small helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import stamina

from pipeline.generation import GenerationSpec
from pipeline.media.run import ffmpeg
from pipeline.pricing import Tier
from pipeline.providers.latency import LatencyModel
from pipeline.providers.polling import PollPolicy
from pipeline.providers.runcomfy import RunComfyProvider
from pipeline.providers.sandbox.config import SandboxConfig
from pipeline.providers.sandbox.render import RenderJob, frame_size, render
from pipeline.providers.sandbox.server import SandboxHandle, run_sandbox
from pipeline.providers.settings import ProviderSettings

T = TypeVar("T")

#: Latency multiplier of the shared sandbox: a 3 s standard clip is "ready" in ~0.3 s.
FAST = 0.005


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion in a fresh event loop."""
    return asyncio.run(coro)


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    """Retries happen at once (stamina's testing switch), still capped by the configured attempts."""
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


@pytest.fixture(autouse=True)
def no_real_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may pick up a developer's real RunComfy token."""
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_MODEL_API_BASE", raising=False)
    monkeypatch.setenv("KLINGFLOW_PROVIDER_TOKEN_FILE", str(tmp_path / "no-token.json"))


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHandle]:
    """One fault-free sandbox for the session: fast latency, small pictures."""
    with run_sandbox(SandboxConfig(latency_scale=FAST, render_scale=0.1, slots=8)) as handle:
        yield handle


def sandbox_settings(handle: SandboxHandle, **overrides: Any) -> ProviderSettings:
    """Adapter settings pointing at ``handle`` (no token file, small retry caps)."""
    values: dict[str, Any] = {
        "base_url": handle.base_url,
        "token_file": Path("/nonexistent/token.json"),
        "max_attempts": 4,
        **overrides,
    }
    return ProviderSettings(**values)


def sandbox_provider(handle: SandboxHandle, **overrides: Any) -> RunComfyProvider:
    """The RunComfy adapter talking to ``handle`` over loopback, allowed to download from it."""
    return RunComfyProvider(
        sandbox_settings(handle, **overrides), download_origins=(handle.origin,), name="sandbox"
    )


def fast_policy(scale: float = FAST) -> PollPolicy:
    """A poll policy on the sandbox's time scale."""
    return PollPolicy(latency=LatencyModel(scale=scale))


def spec(prompt: str = "Shot 1: a kite. Shot 2: it lands", **kw: Any) -> GenerationSpec:
    """A small standard request."""
    values: dict[str, Any] = {"tier": Tier.STANDARD, "prompt": prompt, "duration": 3, "seed": 1, **kw}
    return GenerationSpec(**values)


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3 s clip with audio (tiny picture), rendered once."""
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    width, height = frame_size(Tier.STANDARD, "16:9", 0.1)
    job = RenderJob("cafef00d", Tier.STANDARD, "16:9", 3, True, 5, "a kite", width, height)
    return render(job, out)


def solid_png(path: Path, color: str, size: str = "64x64") -> Path:
    """A one-colour PNG made by ffmpeg."""
    ffmpeg(["-f", "lavfi", "-i", f"color=c={color}:s={size}:d=1", "-frames:v", "1", "-y", str(path)])
    return path


# Test modules cannot import conftest under --import-mode=importlib: the helpers are handed
# out as fixtures instead.


@pytest.fixture
def make_spec() -> Any:
    """Factory of small requests: ``make_spec(prompt=..., duration=..., ...)``."""
    return spec


@pytest.fixture
def make_provider() -> Any:
    """Factory of adapters bound to a sandbox handle: ``make_provider(handle, **settings)``."""
    return sandbox_provider


@pytest.fixture
def policy() -> PollPolicy:
    """A poll policy on the shared sandbox's time scale."""
    return fast_policy()


@pytest.fixture
def png() -> Any:
    """Factory of one-colour PNGs: ``png(path, "red")``."""
    return solid_png


@pytest.fixture
def call() -> Any:
    """``call(handle, fn, **settings)``: run ``await fn(provider)`` in one event loop, closing the
    adapter (and its connections) before the loop ends."""

    def run_with(handle: SandboxHandle, fn: Any, **overrides: Any) -> Any:
        async def go() -> Any:
            async with sandbox_provider(handle, **overrides) as provider:
                return await fn(provider)

        return asyncio.run(go())

    return run_with
