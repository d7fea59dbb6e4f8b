"""Choosing finals by hand on a Prefect server: the form (an Enum choice list with QC verdicts,
QC-passing variants preset), the terminal's message, ``status``, and ``klingflow approve``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from flows.choice import _choices, finals_form, form_description, variant_verdicts
from pipeline.cli import main
from pipeline.errors import EXIT_DATAERR
from pipeline.media.qc import QCReport
from pipeline.render.masters import MasterOutcome
from pipeline.render.progress import RunHooks, RunOutcome

from ..pipeline.render.conftest import write_story

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def _draft(tmp_path: Path, variant: str, passed: bool, narrative: str = "teaser") -> MasterOutcome:
    path = tmp_path / variant / "master.mp4"
    qc = cast(QCReport, SimpleNamespace(passed=passed, findings=()))  # what the choice reads of it
    return MasterOutcome(narrative, variant, "draft", path.parent, path=path, qc=qc)


def test_the_form_offers_the_variants_with_qc_passing_ones_preset(tmp_path: Path) -> None:
    drafts = [_draft(tmp_path, "a", False), _draft(tmp_path, "b", True), _draft(tmp_path, "c", True)]
    form = finals_form(["a", "b", "c"], drafts, finals=1)
    schema = form.model_json_schema()
    assert _choices(schema) == ["a", "b", "c"]  # an Enum: the UI offers a list, the server checks it
    field = form.model_fields["approve"]
    assert [str(v) for v in field.default] == ["b"]  # QC-passing, up to the finals allowed
    assert "a (failed QC)" in str(field.description) and "b (passed QC)" in str(field.description)
    assert [str(v) for v in form.model_validate({"approve": ["c"]}).approve] == ["c"]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="'a', 'b' or 'c'"):
        form.model_validate({"approve": ["z"]})


def test_verdicts_and_description_per_narrative(tmp_path: Path) -> None:
    drafts = [_draft(tmp_path, "a", True, "story"), _draft(tmp_path, "a", False, "teaser")]
    assert variant_verdicts(["a", "b"], drafts) == {
        "a": "story: passed QC; teaser: failed QC",
        "b": "no draft",
    }
    text = form_description(drafts, 1, {("story", "a"): "file:///x/master.mp4"})
    assert "| **a** | story | passed QC | [watch](file:///x/master.mp4) |" in text
    assert "| **a** | teaser | failed QC | - |" in text


async def _paused_flow_run(flow: asyncio.Task[Any]) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    async with get_client() as client:
        for _ in range(600):
            runs = await client.read_flow_runs(flow_run_filter=paused)
            if runs or flow.done():
                break
            await asyncio.sleep(0.2)
    assert runs, "the flow did not pause for a choice"
    return runs[0]


async def _latest_table(key: str) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC
        )
    assert found, f"no artifact {key}"
    data: Any = found[0].data
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows


def _status(run: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["status", run, "--json"]) == 0
    shown: dict[str, Any] = json.loads(capsys.readouterr().out)
    return shown


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_manual_selection_pauses_for_a_choice_and_resumes_with_it(
    run_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.render import render
    from pipeline.render.entry import Launch, prepare_run
    from pipeline.settings import load_settings

    # A configured server (the harness's): someone can answer in its UI, so the flow pauses.
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    script = write_story(run_env, name="manual-test", limit="40.00", finals=1, select="manual")
    text = script.read_text()
    # The pause is what is under test, not the media: keep only the short independent narrative
    # (2 segments of 8 s per variant instead of the 4 chained ones of the 40 s story).
    script.write_text(text[: text.index("  - id: story")] + text[text.index("  - id: teaser") :])
    said: list[str] = []
    launch = Launch(prepare_run(str(script), "manual"), load_settings(), RunHooks(on_waiting=said.append))

    async def choose_from_a_shell() -> tuple[RunOutcome, Sequence[int]]:
        flow = asyncio.create_task(
            render(script=str(script), run_id="manual", provider="sandbox", launch=launch)
        )
        flow_run = await _paused_flow_run(flow)
        # What the terminal said: the flow run's page and the equivalent command.
        assert said and f"/flow-runs/flow-run/{flow_run.id}" in said[0]
        assert "klingflow approve manual " in said[0]
        shown = await asyncio.to_thread(_status, "manual", capsys)
        assert shown["status"] == "waiting for choice"
        codes = [await asyncio.to_thread(main, ["approve", "manual", "z"])]  # not a variant
        codes.append(await asyncio.to_thread(main, ["approve", "manual", "b"]))
        return await flow, codes

    summary, codes = asyncio.run(choose_from_a_shell())
    assert codes == [EXIT_DATAERR, 0]
    assert "choose among a, b, c" in capsys.readouterr().err
    masters = summary.masters
    drafts = sorted((m.narrative, m.variant) for m in masters if m.pass_ == "draft")
    assert drafts == [("teaser", "a"), ("teaser", "b"), ("teaser", "c")]  # the choice came after them
    assert summary.selected == ("b",)
    assert [m.variant for m in masters if m.pass_ == "final"] == ["b"]
    # The plan artifact (keyed by the script) follows the choice: b's finals, no other.
    rows = asyncio.run(_latest_table("manual-test-render-plan"))
    assert {r["variant"] for r in rows if r["pass"] == "final"} == {"b"}
    assert _status("manual", capsys)["status"] == "delivered"
