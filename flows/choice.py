"""Choosing finals by hand (``select: manual``) on a Prefect server: the form, and the answer.

While the run waits, the flow run is Paused with a form whose ``approve`` field is a choice list
of the script's variants (an Enum, so the Prefect UI offers them as options and the server
refuses anything else), each variant's QC verdict in the field's and the form's description,
links to the draft masters as link artifacts, and the QC-passing variants chosen by default.
Whoever waits is told where to answer: the flow run's page in the UI, or
``klingflow approve RUN a,c`` from any shell (:func:`approve`, which resumes the paused flow run
through the Prefect API).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import acreate_link_artifact
from prefect.client.schemas.objects import StateType
from prefect.exceptions import NotPausedError
from prefect.flow_runs import apause_flow_run, aresume_flow_run
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input
from prefect.input.run_input import keyset_from_paused_state
from prefect.runtime import flow_run
from pydantic import Field, create_model

from flows.operations import flow_runs
from pipeline.errors import InputError, InputNotFound
from pipeline.render.masters import MasterOutcome
from pipeline.render.run import Chooser

#: How long a manual selection waits for a person before the run gives up on finals.
CHOICE_TIMEOUT_S = 24 * 3600


def verdict(master: MasterOutcome) -> str:
    """A draft master's QC verdict in a few words."""
    if not master.delivered:
        return f"not delivered: {master.error}"
    return "passed QC" if master.passed else "failed QC"


def variant_verdicts(variants: Sequence[str], drafts: Sequence[MasterOutcome]) -> dict[str, str]:
    """Each variant with its draft masters' verdicts, e.g. ``{"a": "passed QC"}`` (one
    narrative) or ``{"a": "story: passed QC; teaser: failed QC"}``."""
    several = len({m.narrative for m in drafts}) > 1
    found: dict[str, list[str]] = {v: [] for v in variants}
    for m in drafts:
        found.setdefault(m.variant, []).append(f"{m.narrative}: {verdict(m)}" if several else verdict(m))
    return {v: "; ".join(texts) or "no draft" for v, texts in found.items()}


def finals_form(variants: Sequence[str], drafts: Sequence[MasterOutcome], finals: int) -> type[RunInput]:
    """The form a person fills in: ``approve``, a list of the variants, QC-passing ones preset."""
    verdicts = variant_verdicts(variants, drafts)
    choice = StrEnum("Variant", [(v, v) for v in variants])  # type: ignore[misc]
    passing = [v for v in variants if all(m.passed for m in drafts if m.variant == v) and drafts][:finals]
    field = Field(
        default=[choice(v) for v in passing],
        description=f"Up to {finals} variant(s) to finish: "
        + ", ".join(f"{v} ({verdicts[v]})" for v in variants),
    )
    form: type[RunInput] = create_model("FinalsChoice", __base__=RunInput, approve=(list[choice], field))
    return form


def form_description(drafts: Sequence[MasterOutcome], finals: int, links: dict[tuple[str, str], str]) -> str:
    """The form's text: every draft master with its verdict and a link to watch it."""
    lines = [
        f"Choose up to {finals} variant(s) to finish (QC-passing ones are preselected).",
        "",
        "| variant | narrative | QC | draft master |",
        "|---|---|---|---|",
    ]
    for m in drafts:
        link = links.get((m.narrative, m.variant))
        watch = f"[watch]({link})" if link else "-"
        lines.append(f"| **{m.variant}** | {m.narrative} | {verdict(m)} | {watch} |")
    return "\n".join(lines)


async def publish_previews(script: str, drafts: Sequence[MasterOutcome]) -> dict[tuple[str, str], str]:
    """A link artifact per delivered draft master (``file://`` on the worker that made it)."""
    links: dict[tuple[str, str], str] = {}
    for m in drafts:
        if m.path is None or not m.delivered:
            continue
        link = m.path.resolve().as_uri()
        links[(m.narrative, m.variant)] = link
        await acreate_link_artifact(
            link=link,
            link_text=f"{m.narrative} / {m.variant} (draft)",
            key=f"{script}-draft-{m.narrative}-{m.variant}",
            description=f"Draft master of {m.narrative}, variant {m.variant}: {verdict(m)}",
        )
    return links


def waiting_message(run_id: str, default: Sequence[str]) -> str:
    """What the terminal says while the run waits: where to choose, and the equivalent command."""
    url = flow_run.ui_url or flow_run.api_url or "the Prefect UI"
    example = ",".join(default) or "a,c"
    return (
        f"waiting for your choice of finals: choose in the Prefect UI at {url}\n"
        f"  or from any shell: klingflow approve {run_id} {example}"
    )


def ui_chooser(
    script: str, run_id: str, variants: Sequence[str], on_waiting: Callable[[str], None] | None
) -> Chooser:
    """The chooser the flow gives the run on a server: pause with the form until answered."""

    async def choose(drafts: Sequence[MasterOutcome], finals: int) -> list[str]:
        links = await publish_previews(script, drafts)
        form = finals_form(variants, drafts, finals)
        default = [str(v) for v in form.model_fields["approve"].default]
        message = waiting_message(run_id, default)
        get_run_logger().info(message)
        if on_waiting is not None:
            on_waiting(message)
        answer: Any = await apause_flow_run(
            wait_for_input=form.with_initial_data(description=form_description(drafts, finals, links)),
            timeout=CHOICE_TIMEOUT_S,
            poll_interval=2,
        )
        chosen = [str(v) for v in answer.approve] if answer is not None else []
        get_run_logger().info("finals chosen: %s", ", ".join(chosen) or "none")
        return chosen

    return choose


def _choices(schema: Any) -> list[str]:
    """The first ``enum`` list anywhere in a JSON schema (the variants of ``approve``)."""
    if isinstance(schema, dict):
        if isinstance(schema.get("enum"), list):
            return [str(v) for v in schema["enum"]]
        values: Any = schema.values()
    elif isinstance(schema, list):
        values = schema
    else:
        return []
    for value in values:
        found = _choices(value)
        if found:
            return found
    return []


async def approve(run_id: str, variants: Sequence[str]) -> str:
    """Resume ``run_id``'s flow run paused for a choice with ``variants``; its name.

    InputNotFound (66) when no flow run of the run waits for a choice; InputError (65) naming
    the valid variants when one is not among them.
    """
    paused = [r for r in await flow_runs(run_id) if r.state_type == StateType.PAUSED and r.state]
    if not paused:
        raise InputNotFound(f"no flow run of run {run_id!r} is waiting for a choice on this Prefect server")
    target = paused[0]
    assert target.state is not None
    keyset = keyset_from_paused_state(target.state)
    schema = await aread_flow_run_input(keyset["schema"], flow_run_id=target.id)
    valid = _choices(schema)
    unknown = [v for v in variants if valid and v not in valid]
    if unknown:
        raise InputError(
            f"unknown variant(s) {', '.join(unknown)} for run {run_id}: choose among {', '.join(valid)}"
        )
    try:
        await aresume_flow_run(UUID(str(target.id)), run_input={"approve": list(variants)})
    except NotPausedError as exc:  # answered meanwhile, from the UI or another shell
        raise InputNotFound(f"run {run_id!r} no longer waits for a choice") from exc
    except RuntimeError as exc:  # the server refused the answer against the form's schema
        raise InputError(f"the Prefect server refused the choice for run {run_id}: {exc}") from exc
    return target.name
