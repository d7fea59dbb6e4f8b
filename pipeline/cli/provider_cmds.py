"""Provider commands: ``klingflow sandbox serve`` and ``klingflow generate``.

Examples::

    klingflow sandbox serve --port 8765 --fault-server-error 0.2
    klingflow sandbox serve --realistic --token T --tls-cert cert.pem --tls-key key.pem \\
        --cdn-base-url https://cdn-sandbox.runcomfy.net:8443 --port 8443
    klingflow generate --prompt "Shot 1: a red kite. Shot 2: it lands" --duration 5 --audio --out clips/

``generate`` uses RunComfy when a token is configured (``RUNCOMFY_TOKEN`` or the token file),
else a sandbox started in-process; ``--provider`` forces the choice. Heavy imports happen inside
the commands so that other commands start fast.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.generation import ASPECT_RATIOS, MAX_DURATION, MIN_DURATION, GenerationSpec
from pipeline.money import format_usd
from pipeline.pricing import Tier

if TYPE_CHECKING:
    from pipeline.providers.jobs import JobEvent, JobReport
    from pipeline.providers.sandbox.config import SandboxConfig
    from pipeline.providers.settings import ProviderSettings

_RATE = typer.Option(min=0.0, max=1.0)

#: Choices as enums: typer builds its click.Choice from them.
AspectRatio = StrEnum("AspectRatio", [(f"R{r.replace(':', '_')}", r) for r in ASPECT_RATIOS])  # type: ignore[misc]


DEFAULT_ASPECT = AspectRatio("16:9")


class ProviderChoice(StrEnum):
    """Values of ``--provider``."""

    SANDBOX = "sandbox"
    RUNCOMFY = "runcomfy"
    FAL = "fal"
    KLING = "kling"


def _fault_options(
    rate_limit: float,
    server_error: float,
    error_in_200: float,
    drop: float,
    fail: float,
    truncate: float,
    corrupt: float,
    slow: float,
    seed: int,
) -> dict[str, float | int]:
    return {
        "rate_limit": rate_limit,
        "server_error": server_error,
        "error_in_200": error_in_200,
        "drop": drop,
        "fail": fail,
        "truncate": truncate,
        "corrupt": corrupt,
        "slow": slow,
        "seed": seed,
    }


def register(app: typer.Typer) -> None:
    """Add ``sandbox serve`` and ``generate`` to ``app``."""
    sandbox_app = typer.Typer(
        name="sandbox",
        help="The local sandbox provider (RunComfy Model API look-alike).",
        no_args_is_help=True,
    )
    app.add_typer(sandbox_app, name="sandbox")

    @sandbox_app.command("serve")
    def serve(
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 = any free one).")] = 8765,
        latency_scale: Annotated[
            float, typer.Option(min=0.0, help="Multiplier of modelled queue/render times (1 = real).")
        ] = 0.02,
        render_scale: Annotated[
            float, typer.Option(min=0.01, max=1.0, help="Picture size multiplier (1 = tier resolution).")
        ] = 1.0,
        data_dir: Annotated[Path, typer.Option(help="Renders, uploads and ledger.jsonl live here.")] = Path(
            ".klingflow-sandbox"
        ),
        max_in_flight: Annotated[int, typer.Option(min=1, help="Queued+running limit (429 beyond).")] = 64,
        submit_rate: Annotated[float, typer.Option(min=0.01, help="Submits per second (429 beyond).")] = 50.0,
        fault_rate_limit: Annotated[float, _RATE] = 0.0,
        fault_server_error: Annotated[float, _RATE] = 0.0,
        fault_error_in_200: Annotated[float, _RATE] = 0.0,
        fault_drop: Annotated[float, _RATE] = 0.0,
        fault_fail: Annotated[float, _RATE] = 0.0,
        fault_truncate: Annotated[float, _RATE] = 0.0,
        fault_corrupt: Annotated[float, _RATE] = 0.0,
        fault_slow: Annotated[float, _RATE] = 0.0,
        fault_seed: Annotated[int, typer.Option(help="Seed of the fault dice.")] = 0,
        realistic: Annotated[
            bool,
            typer.Option(
                "--realistic",
                help="Behave like the hosted API: token required, strict input schemas, images only "
                "as https:// URLs or data: URIs, no uploads.",
            ),
        ] = False,
        token: Annotated[
            str | None,
            typer.Option(
                envvar="KLINGFLOW_SANDBOX_TOKEN",
                show_default=False,
                help="Bearer token clients must send (401 without, 403 wrong). Required with --realistic.",
            ),
        ] = None,
        cdn_base_url: Annotated[
            str | None,
            typer.Option(
                help="Result videos point here (URL/videos/ID.mp4), e.g. https://cdn-sandbox.runcomfy.net:8443; "
                "map its host name to this server. Without a port, the API's port is used."
            ),
        ] = None,
        tls_cert: Annotated[
            Path | None, typer.Option(help="Serve HTTPS with this PEM certificate chain (needs --tls-key).")
        ] = None,
        tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    ) -> None:
        """Serve the sandbox in the foreground (Ctrl-C stops it). The API is at http(s)://HOST:PORT/v1."""
        from pydantic import SecretStr

        from pipeline.errors import ConfigError
        from pipeline.providers.sandbox.config import FaultConfig, SandboxConfig
        from pipeline.providers.sandbox.server import check_tls
        from pipeline.providers.sandbox.server import serve as run_server

        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
        tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
        if tls is not None:
            check_tls(tls)

        faults = FaultConfig(
            **_fault_options(
                fault_rate_limit,
                fault_server_error,
                fault_error_in_200,
                fault_drop,
                fault_fail,
                fault_truncate,
                fault_corrupt,
                fault_slow,
                fault_seed,
            )
        )
        config = SandboxConfig(
            latency_scale=latency_scale,
            render_scale=render_scale,
            max_in_flight=max_in_flight,
            submit_rate_per_s=submit_rate,
            submit_burst=max(int(submit_rate), 1),
            faults=faults,
            token=SecretStr(token) if token else None,
            realistic=realistic,
            cdn_base_url=cdn_base_url,
        )
        scheme = "https" if tls else "http"
        mode = "realistic" if realistic else "lenient"
        typer.echo(
            f"sandbox API ({mode}): {scheme}://{host}:{port}/v1  ledger: {data_dir / 'ledger.jsonl'}",
            err=True,
        )
        run_server(config, host=host, port=port, data_dir=data_dir, tls=tls)

    @app.command("generate")
    def generate(
        prompt: Annotated[str, typer.Option(help="What happens; number shots as 'Shot 1: … Shot 2: …'.")],
        duration: Annotated[int, typer.Option(min=MIN_DURATION, max=MAX_DURATION, help="Seconds.")] = 5,
        tier: Annotated[Tier, typer.Option(help="Quality tier.")] = Tier.STANDARD,
        audio: Annotated[bool, typer.Option("--audio/--no-audio", help="Generate native audio.")] = False,
        aspect_ratio: Annotated[AspectRatio, typer.Option(help="Frame shape.")] = DEFAULT_ASPECT,
        seed: Annotated[int | None, typer.Option(min=0)] = None,
        negative_prompt: Annotated[str | None, typer.Option()] = None,
        cfg_scale: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.5,
        start_image: Annotated[str | None, typer.Option(help="Local image or URL: image-to-video.")] = None,
        end_image: Annotated[str | None, typer.Option(help="Local image or URL the clip ends on.")] = None,
        out: Annotated[Path, typer.Option(help="Directory for the clip.")] = Path(),
        provider: Annotated[
            ProviderChoice | None,
            typer.Option(
                help="Default: runcomfy with a token, else sandbox; fal needs FAL_KEY, kling "
                "KLING_ACCESS_KEY + KLING_SECRET_KEY."
            ),
        ] = None,
        latency_scale: Annotated[
            # Above 0: the poller scales its patience by it too, and would give up at once.
            float, typer.Option(min=0.001, help="In-process sandbox only: latency multiplier.")
        ] = 0.02,
        resubmit_unknown: Annotated[
            bool, typer.Option(help="If a submit's answer is lost, submit once more (may pay twice).")
        ] = False,
    ) -> int:
        """Buy one clip (sandbox by default without a token) and print where it is and what it is."""
        from pipeline.providers.sandbox.config import SandboxConfig
        from pipeline.settings import load_settings

        settings = load_settings().provider
        spec = GenerationSpec(
            tier=tier,
            prompt=prompt,
            duration=duration,
            aspect_ratio=aspect_ratio.value,
            generate_audio=audio,
            negative_prompt=negative_prompt,
            cfg_scale=cfg_scale,
            seed=seed,
        )
        report = asyncio.run(
            _generate(
                spec,
                settings_provider=provider.value if provider else None,
                settings=settings,
                sandbox_config=SandboxConfig(latency_scale=latency_scale),
                start_image=start_image,
                end_image=end_image,
                out=out,
                resubmit_unknown=resubmit_unknown,
            )
        )
        if report.error is not None:
            raise report.error
        _print_report(report)
        return 0


async def _generate(
    spec: GenerationSpec,
    *,
    settings_provider: str | None,
    settings: ProviderSettings,
    sandbox_config: SandboxConfig,
    start_image: str | None,
    end_image: str | None,
    out: Path,
    resubmit_unknown: bool,
) -> JobReport:
    import dataclasses

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipeline.providers.jobs import run_job
    from pipeline.providers.latency import LatencyModel
    from pipeline.providers.polling import PollPolicy
    from pipeline.providers.selection import ProviderName, open_provider

    async with open_provider(settings_provider, settings, sandbox_config=sandbox_config) as opened:
        if start_image:
            spec = dataclasses.replace(spec, start_image_url=await opened.image_url(start_image))
        if end_image:
            spec = dataclasses.replace(spec, end_image_url=await opened.image_url(end_image))
        scale = sandbox_config.latency_scale if opened.name is ProviderName.SANDBOX else 1.0
        policy = PollPolicy(latency=LatencyModel(scale=scale))
        console = Console(stderr=True, highlight=False)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task(f"{opened.name.value}: submitting {spec.model_id}", total=None)

            def on_event(event: JobEvent) -> None:
                text = event.kind
                if event.status is not None:
                    where = (
                        f" (queue position {event.status.queue_position})"
                        if event.status.queue_position
                        else ""
                    )
                    text = f"{event.status.raw_status}{where}"
                progress.update(task, description=f"{opened.name.value} {event.request_id or ''}: {text}")

            return await run_job(
                opened.provider,
                spec,
                lambda rid: out / f"{rid}.mp4",
                policy=policy,
                on_event=on_event,
                resubmit_unknown=resubmit_unknown,
            )


def _print_report(report: JobReport) -> None:
    clip = report.clip
    assert clip is not None  # a report without error always has its clip
    cost = report.result.cost_usd if report.result else None
    lines = [
        f"request:    {report.request_id}",
        f"file:       {clip.path}",
        f"size:       {clip.size} bytes",
        f"sha256:     {clip.sha256}",
        f"duration:   {clip.duration:.3f} s",
        f"resolution: {clip.width}x{clip.height}",
        f"audio:      {'yes' if clip.has_audio else 'no'}",
    ]
    if cost is not None:
        lines.append(f"cost:       {format_usd(cost, exact=True)}")
    typer.echo("\n".join(lines))
