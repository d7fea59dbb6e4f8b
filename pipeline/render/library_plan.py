"""The plan as the clip library sees it: which requests are already paid for (``reuse``), and so
what a run of the script will really buy (``to_spend``), which is what its budget check counts.

Used by ``klingflow plan`` and by :func:`pipeline.render.entry.prepare_run`, with the same
identities the run's :class:`~pipeline.render.reuse.LibraryStep` uses, so the plan's ``reuse``
rows are exactly the clips the run takes without buying.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import KlingflowError
from pipeline.planning.plan import PaidCheck, PlannedRequest, RenderPlan, build_plan
from pipeline.providers.selection import choose_provider
from pipeline.providers.settings import ProviderSettings
from pipeline.render.reuse import Localize, base_dir_local, identities
from pipeline.render.settings import RunSettings
from pipeline.script.loader import LoadedScript
from pipeline.settings import Settings, load_settings
from pipeline.store.library import ClipLibrary, library_exists, library_url


def provider_identity(requested: str | None, settings: ProviderSettings, *, rehearse: bool = False) -> str:
    """The provider a request's identity names: the one that would render it. A rehearsal's
    clips are its own (``runcomfy-rehearsal``, …): never a real provider's, and never the plain
    sandbox's either, which would spare the rehearsed provider's code path the very requests it
    is run to exercise. A choice that cannot be made yet names what was asked for."""
    try:
        name = choose_provider(requested, settings, rehearse=rehearse).value
    except KlingflowError:
        name = requested or "runcomfy"
    return f"{name}-rehearsal" if rehearse else name


@dataclass
class LibraryCheck:
    """A :data:`~pipeline.planning.plan.PaidCheck` over one library."""

    library: ClipLibrary
    provider: str
    local: Localize

    def __call__(self, requests: Sequence[PlannedRequest]) -> list[bool]:
        """Which of ``requests`` the library holds a clip for (reads image files)."""
        ids = identities(requests, self.provider, self.local)
        held = self.library.known(ids)
        return [i in held for i in ids]


@contextlib.contextmanager
def library_check(
    loaded: LoadedScript,
    run: RunSettings,
    provider_settings: ProviderSettings,
    provider: str | None = None,
    *,
    rehearse: bool = False,
) -> Iterator[PaidCheck | None]:
    """The library's answer for ``loaded``'s requests, None when there is no library yet (a plan
    never creates one: ``klingflow plan`` writes nothing)."""
    url = library_url(run.runs_dir, run.store_url)
    if not library_exists(url):
        yield None
        return
    library = ClipLibrary.open(url)
    try:
        name = provider_identity(provider or loaded.script.provider, provider_settings, rehearse=rehearse)
        yield LibraryCheck(library, name, base_dir_local(Path(loaded.base_dir).absolute()))
    finally:
        library.close()


@contextlib.contextmanager
def paid_for(
    loaded: LoadedScript,
    settings: Settings | None = None,
    provider: str | None = None,
    *,
    rehearse: bool = False,
) -> Iterator[PaidCheck | None]:
    """:func:`library_check` with settings from the environment unless given; None when they
    cannot be read (the run reports bad settings itself)."""
    if settings is None:
        try:
            settings = load_settings()
        except KlingflowError:
            yield None
            return
    with library_check(loaded, settings.run, settings.provider, provider, rehearse=rehearse) as paid:
        yield paid


def plan_with_library(
    loaded: LoadedScript,
    settings: Settings | None = None,
    provider: str | None = None,
    *,
    rehearse: bool = False,
) -> RenderPlan:
    """The plan of ``loaded`` with ``reuse`` marked from the clip library (see :func:`paid_for`;
    a rehearsal's from its own clips)."""
    with paid_for(loaded, settings, provider, rehearse=rehearse) as paid:
        return build_plan(loaded.script, paid, provider=provider)
