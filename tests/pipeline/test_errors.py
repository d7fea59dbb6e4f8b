"""The error tree: every class has the exit code the docstring tree of pipeline/errors.py gives."""

from __future__ import annotations

import pytest

from pipeline import errors
from pipeline.errors import (
    AuthError,
    JobBusy,
    KlingflowError,
    MediaError,
    NoBalance,
    RateLimited,
    RunAborted,
    RunBusy,
    StackError,
    SubmitOutcomeUnknown,
    TransportError,
)

#: (class name, parent name, exit code), transcribed from the module docstring's tree.
TREE = [
    ("KlingflowError", "Exception", 70),
    ("InputError", "KlingflowError", 65),
    ("ScriptError", "InputError", 65),
    ("InputNotFound", "InputError", 66),
    ("ConfigError", "InputError", 78),
    ("BudgetError", "KlingflowError", 3),
    ("PromptTooLong", "KlingflowError", 65),
    ("ProviderError", "KlingflowError", 69),
    ("BadRequest", "ProviderError", 65),
    ("AuthError", "ProviderError", 77),
    ("NoBalance", "ProviderError", 4),
    ("RateLimited", "ProviderError", 75),
    ("UpstreamError", "ProviderError", 69),
    ("TransportError", "ProviderError", 75),
    ("SubmitOutcomeUnknown", "TransportError", 75),
    ("DownloadError", "ProviderError", 74),
    ("DownloadIncomplete", "DownloadError", 74),
    ("GenerationFailed", "ProviderError", 1),
    ("GenerationCancelled", "ProviderError", 1),
    ("GenerationTimeout", "ProviderError", 75),
    ("MediaError", "KlingflowError", 74),
    ("StorageError", "KlingflowError", 74),
    ("StorageAuthError", "StorageError", 77),
    ("StorageUnavailable", "StorageError", 69),
    ("StorageConflict", "StorageError", 73),
    ("StorageNotFound", "StorageError", 74),
    ("DiskFull", "StorageError", 73),
    ("StackError", "KlingflowError", 69),
    ("RunBusy", "KlingflowError", 75),
    ("JobBusy", "RunBusy", 75),
    ("RunIncomplete", "KlingflowError", 1),
]


@pytest.mark.parametrize(("name", "parent", "code"), TREE, ids=[row[0] for row in TREE])
def test_every_class_has_its_documented_exit_code_and_parent(name: str, parent: str, code: int) -> None:
    cls = getattr(errors, name)
    assert cls.exit_code == code
    parent_cls = Exception if parent == "Exception" else getattr(errors, parent)
    assert issubclass(cls, parent_cls)


def test_the_tree_is_complete() -> None:
    """Every error class of the module appears in the documented tree (RunAborted apart)."""
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, KlingflowError) and value.__name__ == name
    }
    assert defined == {row[0] for row in TREE} | {"RunAborted"}


@pytest.mark.parametrize("inner", [AuthError("token refused"), NoBalance("no balance"), StackError("pg")])
def test_run_aborted_takes_its_errors_exit_code(inner: KlingflowError) -> None:
    aborted = RunAborted(inner)
    assert aborted.exit_code == inner.exit_code
    assert aborted.error is inner
    assert str(aborted) == str(inner)


def test_job_busy_is_a_run_busy_naming_key_and_status() -> None:
    busy = JobBusy("run1/job3", "submitted")
    assert isinstance(busy, RunBusy)
    assert busy.status == "submitted"
    assert "run1/job3" in str(busy) and "submitted" in str(busy)


def test_archive_aliases_are_the_storage_classes() -> None:
    assert errors.ArchiveError is errors.StorageError
    assert errors.ArchiveAuthError is errors.StorageAuthError
    assert errors.ArchiveUnavailable is errors.StorageUnavailable
    assert errors.ArchiveConflict is errors.StorageConflict


def test_problems_are_sorted_and_located() -> None:
    late = errors.Problem("s.yaml", 9, "shots[1].prompt", "missing")
    early = errors.Problem("s.yaml", 2, "", "not a mapping")
    error = errors.ScriptError([late, early])
    assert error.problems == [early, late]
    assert str(error) == "s.yaml:2: not a mapping\ns.yaml:9: shots[1].prompt: missing"
    assert str(errors.Problem("s.yaml", 0, "a", "b")) == "s.yaml: a: b"


def test_tails_are_appended_to_the_message() -> None:
    assert str(MediaError("ffmpeg failed", stderr_tail="line 1\nline 2")) == "ffmpeg failed\nline 1\nline 2"
    assert str(MediaError("ffmpeg failed")) == "ffmpeg failed"
    assert str(StackError("pg failed", log_tail="FATAL")) == "pg failed\nFATAL"


def test_provider_errors_carry_what_is_known() -> None:
    limited = RateLimited("slow down", retry_after=2.5, status_code=429, request_id="r1")
    assert (limited.retry_after, limited.status_code, limited.request_id) == (2.5, 429, "r1")
    assert isinstance(SubmitOutcomeUnknown("lost"), TransportError)
