"""A render reads like the work in Prefect: a task run per stage kind as well as per generation,
and INFO logs of the plan, each stage, QC and money in the flow run's Logs tab."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from flows.stages import STAGE_TASKS, log_event, run_stage

from ..pipeline.render.conftest import write_story
from .conftest import logs_and_task_runs

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def test_outside_a_flow_a_stage_is_its_work(caplog: pytest.LogCaptureFixture) -> None:
    async def work() -> int:
        return 7

    assert asyncio.run(run_stage("unknown-kind", "x", work)) == 7
    assert set(STAGE_TASKS) == {"master", "qc", "selection", "archive", "report"}
    from pipeline.planning.plan import build_plan
    from pipeline.script.loader import load_script

    plan = build_plan(load_script(str(Path(__file__).parents[2] / "configs/bulk-ab.yaml")).script)
    with caplog.at_level(logging.INFO, logger="klingflow.flow"):
        log_event("failed", plan.requests[0], "HTTP 500")
        log_event("queued", plan.requests[0], "")  # not worth a line
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "failed (HTTP 500)" in record.getMessage()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "prefect_at_info")
def test_the_flow_run_has_a_task_run_per_stage_and_logs_at_info(run_env: Path) -> None:
    from prefect import flow

    from flows.render import render

    script = write_story(run_env, name="stages-test", limit="20.00", finals=1, select="auto")
    text = script.read_text()
    # One short narrative, one variant: every stage kind, little media.
    text = text[: text.index("  - id: story")] + text[text.index("  - id: teaser") :]
    script.write_text(text[: text.index("  - id: b")] + text[text.index("budget:") :])

    @flow
    async def parent() -> Any:  # to know the render's flow run id: it is this flow's subflow
        as_state: Any = render  # return_state=True: typed as the flow's own return value
        state = await as_state(script=str(script), run_id="stages", provider="sandbox", return_state=True)
        return state.state_details.flow_run_id, await state.result()

    flow_run_id, summary = asyncio.run(parent())
    assert summary.delivered, summary
    messages, task_runs = asyncio.run(logs_and_task_runs(flow_run_id))
    kinds = {name.split("-")[0] for name in task_runs}
    assert {"draft", "final", "master", "qc", "selection", "archive", "report"} <= kinds, task_runs
    assert sum(name.startswith("master-") for name in task_runs) == 2  # the draft and the final master
    text = "\n".join(messages)
    for expected in (
        "run stages: 2 draft and 2 final requests",
        "provider sandbox (local, free): no money will be spent",
        "stage: draft",
        "master-draft-teaser-a: started",
        "QC draft teaser/a: passed",
        "selection: done",
        "money: ",
        "run stages delivered: $",
    ):
        assert expected in text, (expected, text[-3000:])
