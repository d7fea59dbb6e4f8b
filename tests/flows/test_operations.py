"""``flows/operations.py``: the pure helpers (run tags, run ids of flow runs, active states).

What talks to a Prefect server (listing, cancelling, resuming flow runs) is exercised by the flow
tests that start one; none is started here.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import FlowRun, StateType

from flows import operations


def _flow_run(tags: list[str], parameters: dict[str, Any] | None = None) -> FlowRun:
    return FlowRun(name="brave-otter", flow_id="00000000-0000-0000-0000-000000000001", tags=tags,
                   parameters=parameters or {})  # fmt: skip


def test_run_tag() -> None:
    assert operations.run_tag("weekly-campaign-049373e34d") == "run:weekly-campaign-049373e34d"


def test_run_id_of_reads_the_tag_back() -> None:
    run_id = "weekly-campaign-049373e34d"
    assert operations.run_id_of(_flow_run(["other", operations.run_tag(run_id)])) == run_id


def test_run_id_of_falls_back_to_the_explicit_parameter() -> None:
    assert operations.run_id_of(_flow_run(["nightly"], {"run_id": "r-7"})) == "r-7"
    assert operations.run_id_of(_flow_run([], {"run_id": None})) is None
    assert operations.run_id_of(_flow_run([])) is None


def test_the_tag_wins_over_the_parameter() -> None:
    flow_run = _flow_run([operations.run_tag("from-tag")], {"run_id": "from-param"})
    assert operations.run_id_of(flow_run) == "from-tag"


def test_active_states_hold_a_worker_finished_ones_do_not() -> None:
    assert StateType.RUNNING in operations.ACTIVE
    assert StateType.CANCELLING in operations.ACTIVE
    assert StateType.SCHEDULED in operations.ACTIVE
    for done in (StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED):
        assert done not in operations.ACTIVE
