"""Opening everything one run needs — provider, job store, ledger, engine — in one place.

The caller's :class:`~pipeline.render.progress.RunHooks` go into the engine and the run as they
are built (nothing is set on them afterwards). Callers normally come through
:mod:`pipeline.render.entry`, which loads and plans the script first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from pipeline.errors import BudgetError
from pipeline.planning.plan import RenderPlan
from pipeline.providers.latency import LatencyModel
from pipeline.providers.polling import PollPolicy
from pipeline.providers.selection import OpenedProvider, ProviderName, choose_provider, open_provider
from pipeline.providers.settings import ProviderSettings, load_settings
from pipeline.render.engine import Engine
from pipeline.render.layout import RunLayout
from pipeline.render.library_plan import provider_identity
from pipeline.render.limits import Limits, LocalLimits
from pipeline.render.progress import RunHooks
from pipeline.render.reuse import LibraryStep, base_dir_local
from pipeline.render.run import RenderRun
from pipeline.render.runlock import hold_run
from pipeline.render.settings import RunSettings
from pipeline.render.shared import ClipShare
from pipeline.script.loader import LoadedScript
from pipeline.store.jobs import JobStore
from pipeline.store.library import ClipLibrary, library_url


@dataclass
class RunSession:
    """An open run: its provider, store, engine and stages."""

    run_id: str
    layout: RunLayout
    provider: OpenedProvider
    store: JobStore
    engine: Engine
    run: RenderRun


@contextlib.asynccontextmanager
async def open_run(
    loaded: LoadedScript,
    plan: RenderPlan,
    *,
    run_id: str,
    settings: RunSettings,
    provider: str | None = None,
    limits: Limits | None = None,
    approve: Sequence[str] | None = None,
    resubmit_unknown: bool = False,
    provider_settings: ProviderSettings | None = None,
    rehearse: bool = False,
    http_clients: tuple[httpx.AsyncClient, httpx.AsyncClient] | None = None,
    hooks: RunHooks | None = None,
) -> AsyncIterator[RunSession]:
    """Open provider, store and engine for ``run_id``; close them on exit.

    ``rehearse`` runs the real provider's path against a realistic sandbox in this process
    (``klingflow run --rehearse``). ``http_clients`` (API, downloads) replace the provider's own
    HTTP clients: tests use it to reach a sandbox under a real-looking host name. ``hooks`` are
    handed to the engine and the run as they are built; ``on_start`` gets the open session and
    ``on_spend`` the spend already in the store (a resumed run starts from what it charged).
    ``provider_settings`` default to the environment's, for callers that load only run settings.

    The run's ledger row is created with the script's ``limit_usd`` (kept as it was when
    resuming). Raises BudgetError when money already committed leaves nothing for this plan.
    """
    hooks = hooks or RunHooks()
    base_dir = Path(await asyncio.to_thread(os.path.abspath, loaded.base_dir))
    layout = RunLayout(settings.runs_dir / run_id)
    held = contextlib.ExitStack()
    held.enter_context(hold_run(layout.root, run_id))
    try:
        # Ours alone now (the lock): what a killed run was downloading is never finished.
        await asyncio.to_thread(layout.remove_partial_downloads)
        store = JobStore.open(settings.store_url or layout.db_url)
    except BaseException:
        held.close()
        raise
    shared: ClipShare | None = None
    library: ClipLibrary | None = None
    try:
        # The clip library spans runs (beside them, or in the shared store): see pipeline.render.reuse.
        library = await asyncio.to_thread(
            ClipLibrary.open, library_url(settings.runs_dir, settings.store_url)
        )
        shared = ClipShare.open(settings.shared_url, run_id) if settings.shared_url else None
        # A write that may wait for another process's lock: off the event loop.
        spend = await asyncio.to_thread(
            store.ensure_run,
            run_id,
            script=loaded.script.name,
            limit=Decimal(str(loaded.script.budget.limit_usd)),
        )
        if spend.committed >= spend.limit:
            raise BudgetError(
                f"run {run_id} has already committed ${spend.committed} of its ${spend.limit} budget"
            )
        sandbox_config = None
        scale = 1.0
        requested = provider or loaded.script.provider
        psettings = provider_settings or load_settings()
        if rehearse or choose_provider(requested, psettings, rehearse=rehearse) is ProviderName.SANDBOX:
            sandbox_config = settings.sandbox_config()
            scale = sandbox_config.latency_scale
        if settings.poll_latency_scale is not None:
            scale = settings.poll_latency_scale
        async with open_provider(
            requested,
            psettings,
            sandbox_config=sandbox_config,
            sandbox_url=settings.sandbox_url,
            rehearse=rehearse,
            image_transport=settings.image_transport,
            shared_url=settings.shared_url,
            archive=loaded.script.output.archive,
            http_client=http_clients[0] if http_clients else None,
            download_client=http_clients[1] if http_clients else None,
        ) as opened:
            engine = Engine(
                run_id=run_id,
                provider=opened.provider,
                image_url=opened.image_url,
                store=store,
                layout=layout,
                limits=limits
                or LocalLimits(settings.max_in_flight, settings.submit_rate_per_s, settings.submit_burst),
                base_dir=base_dir,
                policy=PollPolicy(latency=LatencyModel(scale=scale)),
                max_regenerations=settings.max_regenerations,
                resubmit_unknown=resubmit_unknown,
                shared=shared,
                library=LibraryStep(
                    library,
                    provider=provider_identity(requested, psettings, rehearse=rehearse),
                    run_id=run_id,
                    local=base_dir_local(base_dir),
                    shared=shared,
                    store=store,
                ),
                wrap=hooks.wrap,
                on_event=hooks.on_event,
                on_spend=hooks.on_spend,
                script_file=loaded.file,
            )
            run = RenderRun(
                loaded=loaded,
                plan=plan,
                run_id=run_id,
                layout=layout,
                engine=engine,
                archive_to=loaded.script.output.archive,
                approve=approve,
                choose=hooks.choose,
                on_stage=hooks.on_stage,
                run_stage=hooks.run_stage,
            )
            session = RunSession(run_id, layout, opened, store, engine, run)
            if hooks.on_start is not None:
                hooks.on_start(session)
            if hooks.on_spend is not None:
                # One read of the ledger row: in SQLite's WAL mode a read never waits for a writer.
                hooks.on_spend(await asyncio.to_thread(store.spend, run_id))
            yield session
    finally:
        if shared is not None:
            shared.close()
        if library is not None:
            library.close()
        store.close()
        held.close()
