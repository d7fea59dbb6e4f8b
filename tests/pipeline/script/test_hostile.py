"""Hostile scripts are refused as FILE:LINE: problems with exit 65, never a crash.

Bombs run in a child process under a memory rlimit: a regression then fails the test (MemoryError,
a signal, or a traceback in the child) instead of eating the machine or taking pytest down (a
100,000-deep document overflowed the C stack). The YAML facts pinned here, from PyYAML 6 /
libyaml: aliases are expanded when data is constructed (yaml/constructor.py), the composer
recurses once per level (yaml/composer.py ``compose_node``; the C loader's ``_compose_node`` in
yaml/_yaml.pyx), and YAML 1.1's float resolver (yaml/resolver.py) needs a '.' and a signed
exponent, so ``1e2`` is text.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.errors import EXIT_DATAERR, ScriptError
from pipeline.script.loader import parse_script
from pipeline.script.money import MAX_USD
from pipeline.script.yaml_limits import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SCRIPT_BYTES,
    MAX_TEXT_CHARS,
    LimitExceeded,
    check_limits,
)

KLINGFLOW = Path(sys.executable).with_name("klingflow")
#: Address space allowed to a child klingflow: about 10 × what validating a script takes.
CHILD_MEMORY = 1 << 30
#: A child's largest resident size allowed (kB): validating a real script takes about 60 MB.
CHILD_MAX_RSS_KB = 300_000

VALID_HEAD = """\
version: 1
name: hostile
narratives:
  - id: a
    shots:
      - duration: 3
        action: "a cat walks"
"""


def billion_laughs(levels: int = 9, fanout: int = 9) -> str:
    """The classic alias bomb: each level repeats the one before ``fanout`` times."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * fanout) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def flow_nesting(depth: int) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


def block_nesting(depth: int) -> str:
    return "a:\n" + "  " + "- " * depth + "x\n"  # compact nested block sequences: "- - - x"


def mapping_nesting(depth: int) -> str:
    return "".join(" " * i + "a:\n" for i in range(depth))


def money(value: str) -> str:
    return VALID_HEAD + f"budget:\n  limit_usd: {value}\n"


#: name → (script text, line of the problem, words the problem must contain)
HOSTILE_YAML: dict[str, tuple[str, int, str]] = {
    "billion-laughs-9x9": (billion_laughs(), 5, f"more than {MAX_NODES:,} values once aliases"),
    "flow-nesting-1000": (flow_nesting(1000), 1, f"nest more than {MAX_DEPTH} levels"),
    "flow-nesting-100000": (flow_nesting(100_000), 1, f"nest more than {MAX_DEPTH} levels"),
    "block-nesting-1000": (block_nesting(1000), 2, f"nest more than {MAX_DEPTH} levels"),
    "block-nesting-100000": (block_nesting(100_000), 2, f"nest more than {MAX_DEPTH} levels"),
    "mapping-nesting-1000": (mapping_nesting(1000), MAX_DEPTH + 1, f"nest more than {MAX_DEPTH} levels"),
    "huge-file": ("# " + "x" * (2 * MAX_SCRIPT_BYTES) + "\n", 1, f"larger than {MAX_SCRIPT_BYTES:,} bytes"),
    "recursive-alias": ("a: &a [1, *a]\n", 1, "alias *a refers to a list or mapping that contains it"),
    "too-many-aliases": (
        "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n",
        2,
        f"more than {MAX_ALIASES:,} aliases",
    ),
    "long-text-aliases": (
        f"a: &a {'x' * 100_000}\nb: [" + ", ".join(["*a"] * 30) + "]\n",
        2,
        f"more than {MAX_TEXT_CHARS:,} characters",
    ),
    "deep-through-aliases": (
        "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n",
        2,
        f"nest more than {MAX_DEPTH} levels",
    ),
}

#: name → (limit_usd as written, words the problem must contain)
HOSTILE_MONEY: dict[str, tuple[str, str]] = {
    "inf": (".inf", "must be a finite amount of US dollars (got .inf)"),
    "minus-inf": ("-.inf", "must be a finite amount of US dollars (got -.inf)"),
    "nan": (".nan", "must be a finite amount of US dollars (got .nan)"),
    "1.0e+308": ("1.0e+308", f"must be at most {MAX_USD:,} (US dollars"),
    "1e14": ("100000000000000", f"must be at most {MAX_USD:,} (US dollars"),
    "1.0e+14": ("1.0e+14", f"must be at most {MAX_USD:,} (US dollars"),
    "1e2": ("1e2", "YAML 1.1 reads 1e2 as text, not a number"),
    "not-whole-cents": ("0.001", "must be in whole cents (got 0.001)"),
    "negative": ("-5", "must be greater than 0 (got -5)"),
    "over-ceiling-by-a-cent": ("1000000.01", f"must be at most {MAX_USD:,}"),
}


#: A small process between this test process and klingflow. A child's peak memory (ru_maxrss)
#: starts at what it was forked or vforked from — this test process, hundreds of MB late in a
#: run — and survives exec; a grandchild of a small process starts small. It runs the command,
#: writes the command's own peak (KiB) to the file named first, and exits with its code.
MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)

#: The peak memory of the last klingflow run_klingflow ran.
_last_child_rss_kb = 0


def run_klingflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real console script in a grandchild with a memory rlimit (util-linux's prlimit, which
    execs it), its peak memory measured; a hang guard, not a timing."""
    global _last_child_rss_kb
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        command = [str(KLINGFLOW), *args]
        proc = subprocess.run(
            [sys.executable, "-c", MEASURE, str(peak), "prlimit", f"--as={CHILD_MEMORY}", *command],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=240,
            check=False,
        )
        _last_child_rss_kb = int(peak.read_text())
    return proc


@pytest.fixture
def write_script(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def assert_refused(proc: subprocess.CompletedProcess[str], path: Path, line: int, words: str) -> None:
    assert proc.returncode == EXIT_DATAERR, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert f"{path}:{line}: " in proc.stderr, proc.stderr[-2000:]
    assert words in proc.stderr, proc.stderr[-2000:]


def _child_rss_kb() -> int:
    return _last_child_rss_kb


# --- the bounds themselves, in-process: they read events only and never expand ----------------


def test_the_node_counter_stops_a_billion_laughs_without_expanding_it() -> None:
    with pytest.raises(LimitExceeded) as info:
        check_limits("bomb.yaml", billion_laughs())
    # Level 5 expands to 9^5 × … > 50,000 values: refused at its line, before levels 6 to 9.
    assert info.value.problem.line == 5
    assert f"more than {MAX_NODES:,} values" in info.value.problem.message


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_depth_is_refused_while_reading_events(depth: int) -> None:
    for text in (flow_nesting(depth), block_nesting(depth)):
        with pytest.raises(LimitExceeded, match=f"nest more than {MAX_DEPTH} levels"):
            check_limits("deep.yaml", text)


def test_the_bounds_leave_room_for_a_script_at_the_limits() -> None:
    check_limits("ok.yaml", flow_nesting(MAX_DEPTH - 1))  # inside the root mapping
    check_limits("ok.yaml", "a: &a 1\nb: [" + ", ".join(["*a"] * MAX_ALIASES) + "]\n")
    check_limits("ok.yaml", "a: [" + ", ".join(["1"] * (MAX_NODES - 3)) + "]\n")  # map, key, list


def test_examples_are_far_inside_the_bounds(example_scripts: list[Path]) -> None:
    for path in example_scripts:
        assert path.stat().st_size < MAX_SCRIPT_BYTES // 20
        check_limits(str(path), path.read_text(encoding="utf-8"))


def test_anchors_and_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    text = VALID_HEAD.replace('action: "a cat walks"', "action: &act a cat walks") + (
        "      - duration: 2\n        action: *act\nbudget:\n  limit_usd: 5\n"
    )
    loaded = parse_script(text.encode(), file="ok.yaml", base_dir=tmp_path)
    assert [s.action for s in loaded.script.narratives[0].shots] == ["a cat walks"] * 2


# --- YAML traps and odd tags: messages, in-process (cheap inputs) -----------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "defaults:\n  aspect_ratio: 16:9\n",
            11,
            "YAML 1.1 reads the unquoted 16:9 as a base-60 number (969)",
        ),
        ("defaults:\n  negative_prompt: no\n", 11, 'reads the unquoted no as false; write "no" in quotes'),
        ("defaults:\n\taudio: true\n", 11, "YAML does not allow tabs for indentation"),
        ("defaults: {<<: {audio: true}}\n", 10, "merge keys (<<) are not supported"),
        ("defaults: !!python/object:os.system x\n", 10, "unsupported YAML tag '!!python/object:os.system'"),
        ("defaults: {seed: !!int zz}\n", 10, "'zz' is not a valid !!int value"),
        ("defaults: {seed: 1" + "0" * 5000 + "}\n", 10, "too large a number"),
        ("defaults: {seed: " + ":".join(["1"] * 5000) + "}\n", 10, "too large a number"),
    ],
)
def test_yaml_traps_are_named(tmp_path: Path, text: str, line: int, words: str) -> None:
    script = VALID_HEAD + "budget:\n  limit_usd: 5\n" + text
    with pytest.raises(ScriptError) as info:
        parse_script(script.encode(), file="trap.yaml", base_dir=tmp_path)
    assert any(p.line == line and words in p.message for p in info.value.problems), info.value


@pytest.mark.parametrize("name", HOSTILE_MONEY)
def test_money_values_are_finite_whole_cents_under_the_ceiling(tmp_path: Path, name: str) -> None:
    written, words = HOSTILE_MONEY[name]
    with pytest.raises(ScriptError) as info:
        parse_script(money(written).encode(), file="money.yaml", base_dir=tmp_path)
    [problem] = info.value.problems
    assert (problem.line, problem.path) == (9, "budget.limit_usd")
    assert words in problem.message


@pytest.mark.parametrize("written", ["100", "100.0", "1.0e+2", "0.01", "1000000", "1000000.00"])
def test_money_at_the_edges_is_accepted(tmp_path: Path, written: str) -> None:
    parse_script(money(written).encode(), file="money.yaml", base_dir=tmp_path)


def test_a_plan_that_would_explode_is_refused(tmp_path: Path) -> None:
    text = money("5") + "variants:\n" + "".join(f"  - id: v{i}\n" for i in range(10_001))
    with pytest.raises(ScriptError, match=r"1 shots × 10,001 variants ask for 10,001 clips per pass"):
        parse_script(text.encode(), file="big.yaml", base_dir=tmp_path)


# --- through the real console script: exit 65, FILE:LINE:, no traceback -----------------------

#: The cases that crashed or ran away before, run on every test run (the rest are marked slow).
ALWAYS = {"billion-laughs-9x9", "flow-nesting-100000", "block-nesting-100000", "huge-file"}


def _cli_cases() -> Iterator[object]:
    for name in HOSTILE_YAML:
        for command in ("validate", "plan"):
            marks = () if name in ALWAYS and command == "validate" else (pytest.mark.slow,)
            yield pytest.param(name, command, marks=marks, id=f"{command}-{name}")


@pytest.mark.parametrize(("name", "command"), list(_cli_cases()))
def test_hostile_yaml_through_the_console_script(
    name: str, command: str, write_script: Callable[[str, str], Path], repo_root: Path
) -> None:
    text, line, words = HOSTILE_YAML[name]
    path = write_script(name, text)
    assert_refused(run_klingflow(command, str(path), cwd=repo_root), path, line, words)
    assert _child_rss_kb() < CHILD_MAX_RSS_KB


def _money_cases() -> Iterator[object]:
    for name in HOSTILE_MONEY:
        for command in ("validate", "plan"):
            fast = command == "plan" and name in {"inf", "1e14"}
            yield pytest.param(
                name, command, marks=() if fast else (pytest.mark.slow,), id=f"{command}-{name}"
            )


@pytest.mark.parametrize(("name", "command"), list(_money_cases()))
def test_hostile_money_through_the_console_script(
    name: str, command: str, write_script: Callable[[str, str], Path], repo_root: Path
) -> None:
    written, words = HOSTILE_MONEY[name]
    path = write_script(name, money(written))
    assert_refused(run_klingflow(command, str(path), cwd=repo_root), path, 9, words)
