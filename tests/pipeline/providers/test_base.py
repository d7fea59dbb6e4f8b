"""The provider interface's plain parts: status words, terminal states, call counts, results."""

from __future__ import annotations

import pytest

from pipeline.providers.base import CallCounter, JobState, ResultInfo, normalise_status


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("in_queue", JobState.QUEUED),
        ("IN_QUEUE", JobState.QUEUED),
        ("pending", JobState.QUEUED),
        (" in_progress ", JobState.RUNNING),
        ("processing", JobState.RUNNING),
        ("completed", JobState.COMPLETED),
        ("succeeded", JobState.COMPLETED),
        ("Success", JobState.COMPLETED),
        ("failed", JobState.FAILED),
        ("error", JobState.FAILED),
        ("cancelled", JobState.CANCELLED),
        ("canceled", JobState.CANCELLED),
    ],
)
def test_status_words_are_normalised(word: str, state: JobState) -> None:
    assert normalise_status(word) is state


@pytest.mark.parametrize("word", ["", "warming_up", "done?"])
def test_unknown_words_count_as_still_running(word: str) -> None:
    assert normalise_status(word) is JobState.RUNNING


def test_terminal_states() -> None:
    terminal = {state for state in JobState if state.is_terminal}
    assert terminal == {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


def test_call_counter_counts_per_request_and_operation() -> None:
    counter = CallCounter()
    assert counter.get("r1", "status") == 0
    counter.add("r1", "status")
    counter.add("r1", "status")
    counter.add("r1", "result")
    counter.add("r2", "status")
    assert counter.get("r1", "status") == 2
    assert counter.get("r1", "result") == 1
    assert counter.get("r2", "status") == 1
    assert counter.get("r2", "result") == 0
    assert CallCounter().calls == {}  # not shared between instances


def test_result_video_url_is_the_first_or_none() -> None:
    done = ResultInfo(
        "r1", JobState.COMPLETED, "completed", video_urls=("https://a/1.mp4", "https://a/2.mp4")
    )
    assert done.video_url == "https://a/1.mp4"
    assert ResultInfo("r1", JobState.RUNNING, "in_progress").video_url is None
