"""The one way into a run, shared by the command line and the Prefect flow.

:func:`prepare_run` loads and checks the script, plans it (a BudgetError, exit 3, before
anything starts) and settles the run id: the command line calls it before Prefect is imported,
so bad input fails in well under a second, and hands the result to the flow, which does not do
it again (a deployment's flow run, which has only the script's path, calls it itself).
:func:`open_prepared` opens the prepared run with the settings loaded once at the entry point
and the caller's :class:`~pipeline.render.progress.RunHooks`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.planning.plan import RenderPlan
from pipeline.render.layout import check_run_id, default_run_id
from pipeline.script.loader import LoadedScript, load_script

if TYPE_CHECKING:
    # Only for annotations: the engine, the job store (SQLAlchemy) and the providers load when a
    # run is opened, so that ``klingflow run`` reaches Prefect's server start sooner.
    from pipeline.render.headstart import HeadStart
    from pipeline.render.limits import Limits
    from pipeline.render.progress import RunHooks
    from pipeline.render.session import RunSession
    from pipeline.settings import Settings


@dataclass(frozen=True)
class PreparedRun:
    """A loaded, planned script and the id of the run that renders it."""

    loaded: LoadedScript
    plan: RenderPlan
    run_id: str

    @property
    def default_run_id(self) -> str:
        """The id a run of this script file gets when none is given (rerunning it resumes)."""
        return _default(self.loaded, self.plan.provider)


#: Providers whose runs get their own default run id: a run uses one provider, so rendering the
#: same script on fal after RunComfy (or Kling after fal) is a new run, never a resume of the
#: other's (RunComfy's and the sandbox's ids stay what they always were).
_OWN_RUN_IDS = frozenset({"fal", "kling"})


def _default(loaded: LoadedScript, provider: str | None) -> str:
    base = default_run_id(loaded.script.name, loaded.sha256)
    return f"{base}-{provider}" if provider in _OWN_RUN_IDS else base


def resolve_run_id(loaded: LoadedScript, run_id: str | None, provider: str | None = None) -> str:
    """The given run id (checked), or the default one for this script file (and provider)."""
    return check_run_id(run_id) if run_id else _default(loaded, provider)


def prepare_run(
    script: str | Path,
    run_id: str | None = None,
    *,
    settings: Settings | None = None,
    provider: str | None = None,
    rehearse: bool = False,
) -> PreparedRun:
    """Load ``script`` (a path or ``s3://`` URL), plan it and settle the run id.

    The plan marks the requests the clip library already holds (``reuse``; for a ``rehearse``
    run, those its earlier rehearsals made), and the budget counts only what will be bought
    (``settings`` from the environment unless given).
    Raises InputError for a bad script, BudgetError when even the cheapest plan is over budget,
    ConfigError for a malformed ``run_id``.
    """
    # Lazily: the library's identities need the job store and image hashing, which the lighter
    # callers of this module (``klingflow run`` before Prefect starts) load only here.
    from pipeline.render.library_plan import plan_with_library

    loaded = load_script(str(script))
    plan = plan_with_library(loaded, settings, provider, rehearse=rehearse)
    return PreparedRun(loaded, plan, resolve_run_id(loaded, run_id, plan.provider))


class Launch:
    """What an in-process caller hands the flow beside its plain parameters: the prepared run,
    the settings it loaded, the hooks to watch the run with and, when it started the run itself
    before Prefect answered, that run.

    Deliberately not a dataclass nor a pydantic model: Prefect stores a flow run's parameters on
    its API, and an object it cannot encode is recorded as ``<Launch>`` and passed as it is
    (a dataclass would be deep-copied field by field on the way, callbacks and all).
    """

    __slots__ = ("head", "hooks", "prepared", "settings")

    def __init__(
        self, prepared: PreparedRun, settings: Settings, hooks: RunHooks, head: HeadStart | None = None
    ) -> None:
        self.prepared = prepared
        self.settings = settings
        self.hooks = hooks
        #: The run already opened and started by the caller, for the flow to attach to
        #: (:mod:`pipeline.render.headstart`); None: the flow opens it.
        self.head = head

    def __repr__(self) -> str:
        return f"Launch(run_id={self.prepared.run_id!r})"


@contextlib.asynccontextmanager
async def open_prepared(
    prepared: PreparedRun,
    settings: Settings,
    *,
    hooks: RunHooks | None = None,
    provider: str | None = None,
    limits: Limits | None = None,
    approve: Sequence[str] | None = None,
    resubmit_unknown: bool = False,
    rehearse: bool = False,
) -> AsyncIterator[RunSession]:
    """Open provider, store and engine for ``prepared`` (see :func:`~pipeline.render.session.open_run`)."""
    from pipeline.render.session import open_run

    async with open_run(
        prepared.loaded,
        prepared.plan,
        run_id=prepared.run_id,
        settings=settings.run,
        provider=provider,
        limits=limits,
        approve=approve,
        resubmit_unknown=resubmit_unknown,
        provider_settings=settings.provider,
        rehearse=rehearse,
        hooks=hooks,
    ) as session:
        yield session
