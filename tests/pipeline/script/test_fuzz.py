"""Property tests: whatever the YAML, ``validate`` and ``plan`` end in success or a KlingflowError.

Arbitrary text and bytes, token soups that reach the parser's corners, arbitrary structures dumped
to YAML, near-valid scripts that reach the planner, and alias documents of random shape are fed
to the library functions the CLI runs (:func:`parse_script`, then :func:`build_plan`,
:func:`plan_to_dict` and the plan table). Never a traceback: only a ScriptError (65) or a
BudgetError (3). Never unbounded work: the examples run under an address-space cap, so a bound
that stops holding fails with MemoryError instead of eating the machine, and the alias documents
check that what was built stays within the node bound.
"""

from __future__ import annotations

import io
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from pipeline.cli.plan_view import print_plan
from pipeline.errors import EXIT_BUDGET, EXIT_DATAERR, KlingflowError, ScriptError
from pipeline.planning.plan import build_plan, plan_to_dict
from pipeline.script.loader import parse_script
from pipeline.script.yaml_limits import MAX_NODES
from pipeline.script.yaml_source import parse_yaml

#: Address space the examples may add to the test process (a bound that broke would need GBs).
HEADROOM = 768 << 20
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE_DIR = Path(__file__).parent


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


@pytest.fixture(autouse=True, scope="module")
def memory_cap() -> Iterator[None]:
    """Cap this process's address space while the examples run (the soft limit is restored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def validate_and_plan(raw: bytes) -> None:
    """What ``klingflow validate`` and ``klingflow plan`` do with a file holding ``raw``."""
    error = _validate_and_plan(raw)
    if error is None:
        return
    assert error.exit_code in {EXIT_DATAERR, EXIT_BUDGET}, repr(error)
    if isinstance(error, ScriptError):
        assert error.problems
        assert all(p.file == "fuzz.yaml" and p.line >= 1 for p in error.problems)


def _validate_and_plan(raw: bytes) -> KlingflowError | None:
    """The KlingflowError the commands end with, or None; anything else propagates (a failure)."""
    try:
        loaded = parse_script(raw, file="fuzz.yaml", base_dir=BASE_DIR)
        plan = build_plan(loaded.script)
        plan_to_dict(plan)
        print_plan(Console(file=io.StringIO(), width=120), plan)
    except KlingflowError as exc:
        return exc
    return None


# --- text ---------------------------------------------------------------------------------------

TOKENS = [
    "[", "]", "{", "}", ": ", ":", "- ", "-", "\n", "  ", "\t", ", ", "? ", "&a ", "&b ", "*a", "*b",
    "!!int ", "!!float ", "!!bool ", "!!str ", "!!binary ", "!!timestamp ", "!!set ", "!!omap ",
    "!!python/object:os.system ", "!foo ", "!", "<<: ", "=", "~", "|\n", ">-\n", "#c", "---\n",
    "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "'q'", '"d\\x00"', '"\\ud800"', "16:9", "1:2:3",
    "yes", "off", ".inf", "-.inf", ".nan", "1e2", "1.0e+308", "0x1F", "0o17", "1_000", "2024-01-01",
    "version: 1\n", "name: x\n", "budget:\n  limit_usd: ", "narratives:\n  - id: a\n    shots:\n",
    "      - duration: 3\n        action: a\n", "a", "é", "\u2028", "\ufeff", "\x00", "\x85",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=80).map("".join))
def test_token_soup(text: str) -> None:
    validate_and_plan(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    validate_and_plan(text.encode())


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(raw: bytes) -> None:
    validate_and_plan(raw)


# --- structures -------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["16:9", "1:1", "pro", "standard", "4k", "none", "auto", "manual", "all", "crossfade"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=40,
)


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


@FUZZ
@given(values)
def test_arbitrary_structures(data: Any) -> None:
    validate_and_plan(dump(data))


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a sensible value, sometimes (one in ten) anything."""
    return st.sampled_from(range(10)).flatmap(lambda n: scalars if n == 9 else good)


words = st.from_regex(r"[a-z][a-z ]{0,30}", fullmatch=True)
money = st.one_of(
    st.decimals(min_value=5, max_value=500, places=2).map(float),
    st.decimals(min_value=5, max_value=500, places=2).map(float),
    st.decimals(min_value=5, max_value=500, places=2).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10**20),
)
settings_keys: dict[str, st.SearchStrategy[Any]] = {
    "aspect_ratio": field(st.sampled_from(["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"])),
    "audio": field(st.booleans()),
    "cfg_scale": field(st.floats(0, 1)),
    "seed": field(st.integers(0, 2**32 - 1)),
    "style": field(words),
    "negative_prompt": field(words),
}
shot = st.fixed_dictionaries(
    {"duration": field(st.integers(1, 60)), "action": field(words)},
    optional={
        "framing": field(st.sampled_from(["wide", "medium", "close-up"])),
        "text": field(words),
        "dialogue": st.lists(
            st.fixed_dictionaries(
                {"speaker": field(st.sampled_from(["The narrator", "Mara"])), "line": field(words)}
            ),
            max_size=3,
        ),
    },
)
narrative = st.fixed_dictionaries(
    {"id": field(st.sampled_from(["a", "b", "c"])), "shots": st.lists(shot, min_size=1, max_size=5)},
    optional={"continuity": field(st.sampled_from(["chain", "independent"])), **settings_keys},
)
near_valid_scripts: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "version": field(st.just(1)),
        "name": field(st.just("fuzz")),
        "narratives": st.lists(narrative, min_size=1, max_size=3, unique_by=lambda n: repr(n["id"])),
        "budget": st.fixed_dictionaries(
            {"limit_usd": field(money)},
            optional={
                "draft_tier": field(st.sampled_from(["standard", "pro", "none"])),
                "final_tier": field(st.sampled_from(["standard", "pro", "4k"])),
                "draft_audio": field(st.booleans()),
                "finals": field(st.integers(0, 4)),
                "select": field(st.sampled_from(["auto", "manual", "all"])),
            },
        ),
    },
    optional={
        "defaults": st.fixed_dictionaries({}, optional=settings_keys),
        "elements": st.dictionaries(
            st.sampled_from(["mara", "leo"]), st.fixed_dictionaries({"description": field(words)}), max_size=2
        ),
        "variants": st.lists(
            st.fixed_dictionaries(
                {"id": field(st.sampled_from(["v1", "v2", "v3", "v4"]))},
                optional={"overrides": st.fixed_dictionaries({}, optional=settings_keys)},
            ),
            max_size=4,
            unique_by=lambda v: repr(v["id"]),
        ),
        "output": st.fixed_dictionaries(
            {},
            optional={
                "transition": field(st.sampled_from(["cut", "crossfade"])),
                "crossfade_seconds": field(st.floats(0.1, 2.0)),
                "loudness_lufs": field(st.floats(-70, -5)),
                "subtitles": field(st.booleans()),
            },
        ),
    },
)


@FUZZ
@given(near_valid_scripts)
def test_near_valid_scripts(data: dict[str, Any]) -> None:
    validate_and_plan(dump(data))


def test_near_valid_scripts_do_reach_the_planner() -> None:
    """The structure strategy is only worth its time if many of its scripts are valid."""
    planned = 0

    @settings(max_examples=100, deadline=None, database=None)
    @given(near_valid_scripts)
    def count(data: dict[str, Any]) -> None:
        nonlocal planned
        try:
            build_plan(parse_script(dump(data), file="fuzz.yaml", base_dir=BASE_DIR).script)
            planned += 1
        except KlingflowError:
            pass

    count()
    assert planned >= 5


# --- aliases --------------------------------------------------------------------------------


@st.composite
def alias_documents(draw: st.DrawFn) -> str:
    """Anchors of random size, each repeating earlier ones by alias, up to 9^8 values expanded."""
    levels = draw(st.integers(1, 8))
    lines = [f"a0: &a0 [{', '.join(['x' * draw(st.integers(1, 50))] * draw(st.integers(1, 9)))}]"]
    for i in range(1, levels):
        refs = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=9))
        nest = draw(st.integers(0, 12))
        body = ", ".join(f"*a{j}" for j in refs)
        lines.append(f"a{i}: &a{i} " + "[" * nest + f"[{body}]" + "]" * nest)
    return "\n".join(lines) + "\n"


def count_nodes(data: Any) -> int:
    """Values in ``data``, walked without recursion (shared lists count each time they appear)."""
    count, todo = 0, [data]
    while todo:
        item = todo.pop()
        count += 1
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return count


@FUZZ
@given(alias_documents())
def test_alias_expansion_is_bounded(text: str) -> None:
    doc = parse_yaml("aliases.yaml", text.encode())
    if doc.data is None:
        assert doc.problems
        return
    assert count_nodes(doc.data) <= MAX_NODES
    validate_and_plan(text.encode())
