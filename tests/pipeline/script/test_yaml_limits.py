"""Bounds on a script's YAML, checked on parser events before anything recursive or expanding."""

from __future__ import annotations

import pytest

from pipeline.script.yaml_limits import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SCRIPT_BYTES,
    LimitExceeded,
    check_limits,
    size_problem,
)


def _refused(text: str) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        check_limits("s.yaml", text)
    assert info.value.problem.file == "s.yaml"
    return info.value


def test_an_ordinary_script_passes() -> None:
    check_limits("s.yaml", "a: &x [1, 2, 3]\nb: *x\nc: {d: [e, f]}\n")


def test_the_file_size_bound_names_the_line_where_it_is_crossed() -> None:
    assert size_problem("s.yaml", b"x" * MAX_SCRIPT_BYTES) is None
    raw = b"a: b\n" * (MAX_SCRIPT_BYTES // 5 + 10)
    problem = size_problem("s.yaml", raw)
    assert problem is not None
    assert problem.line == MAX_SCRIPT_BYTES // 5 + 1
    assert "1 MiB" in problem.message


def test_nesting_deeper_than_the_bound_is_refused_at_its_line() -> None:
    check_limits("s.yaml", "[" * MAX_DEPTH + "]" * MAX_DEPTH)
    check_limits("s.yaml", "a:\n  " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    # The mapping is the first level: MAX_DEPTH lists inside it are one too many.
    exc = _refused("a:\n  " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n")
    assert exc.problem.line == 2
    assert f"more than {MAX_DEPTH} levels" in exc.problem.message
    # 100,000 levels never reach a recursive composer: refused as quickly.
    _refused("[" * 100_000)


def test_depth_counts_what_aliases_bring_in() -> None:
    half = MAX_DEPTH // 2 + 1
    text = "a: &x " + "[" * half + "]" * half + "\nb: " + "[" * half + "*x" + "]" * half + "\n"
    assert "levels" in _refused(text).problem.message


def test_a_billion_laughs_is_refused_by_its_expanded_size() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    exc = _refused("\n".join(lines) + "\n")
    assert f"more than {MAX_NODES:,} values" in exc.problem.message


def test_too_many_aliases_and_recursive_aliases_are_refused() -> None:
    many = "a: &x 1\nb: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n"
    assert "aliases" in _refused(many).problem.message
    recursive = "a: &x [1, *x]\n"
    assert "recursive" in _refused(recursive).problem.message
