"""The layers' import rules, checked on the source (``docs/architecture.md``).

Every module's imports are read with :mod:`ast` (lazy imports inside functions included, as
those are where a dependency hides): the library (``pipeline``) never imports the Prefect
wiring above it (``flows``), which reaches the command line through an entry point instead
(``pipeline/cli/orchestration.py``); the test stack (``pipeline/stack``) is for tests and
benchmark scripts only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, anywhere in its body."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: list[str]) -> set[str]:
    """Every name ``source`` (a module of ``package``) imports; ``from a import b`` gives both
    ``a`` and ``a.b``, relative imports are made absolute."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_walk_sees_lazy_and_relative_imports() -> None:
    # The checker must be able to fail: an import inside a function, a relative one.
    source = "def f():\n    from flows.render import render\nfrom .. import stack\nimport flows\n"
    found = imports_in(source, ["pipeline", "cli"])
    assert {"flows.render", "flows.render.render", "pipeline.stack", "flows"} <= found
    assert within("flows.render", "flows") and not within("flowsy", "flows")


@pytest.mark.parametrize("path", modules("pipeline"), ids=lambda p: module_name(p))
def test_the_library_never_imports_flows(path: Path) -> None:
    bad = sorted(name for name in imports_of(path) if within(name, "flows"))
    assert not bad, f"{module_name(path)} imports {bad}: pipeline/ must not depend on flows/"


def test_the_stack_is_for_tests_and_scripts_only() -> None:
    users = {
        module_name(path): sorted(n for n in imports_of(path) if within(n, "pipeline.stack"))
        for path in modules("pipeline", "flows")
        if not within(module_name(path), "pipeline.stack")
    }
    bad = {name: found for name, found in users.items() if found}
    assert not bad, f"only tests/ and scripts/ may import pipeline.stack: {bad}"


#: What each layer may not import (docs/architecture.md, "Who may import what"). The vocabulary
#: (errors, hashing, pricing, generation, money) is open to all; ``errors.py`` imports nothing.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "pipeline.errors": ("pipeline",),
    "pipeline.script": (
        "pipeline.providers", "pipeline.media", "pipeline.store", "pipeline.archive",
        "pipeline.render", "pipeline.cli", "pipeline.planning",
    ),
    "pipeline.planning": (
        "pipeline.providers", "pipeline.media", "pipeline.storage", "pipeline.store",
        "pipeline.archive", "pipeline.render", "pipeline.cli",
    ),
    "pipeline.storage": (
        "pipeline.providers", "pipeline.media", "pipeline.store", "pipeline.render", "pipeline.cli",
        "pipeline.planning", "pipeline.script", "pipeline.archive",
    ),
    "pipeline.providers": ("pipeline.render", "pipeline.cli"),
    "pipeline.media": ("pipeline.render", "pipeline.cli", "pipeline.providers", "pipeline.store"),
    "pipeline.store": ("pipeline.render", "pipeline.cli", "pipeline.providers", "pipeline.media"),
    "pipeline.archive": ("pipeline.render", "pipeline.cli", "pipeline.providers", "pipeline.store"),
    "pipeline.render": ("pipeline.cli",),
}  # fmt: skip


#: The exceptions, each with its reason (also in docs/architecture.md).
ALLOWED: dict[str, tuple[str, ...]] = {
    # A script is only valid if its compiled prompts fit the provider (2,500 characters): the
    # loader asks the prompt compiler, lazily, so that every problem is reported at once.
    "pipeline.script.loader": ("pipeline.planning.plan",),
}


def _layer_of(name: str) -> str | None:
    return next((layer for layer in FORBIDDEN if within(name, layer)), None)


def test_each_layer_imports_only_those_below_it() -> None:
    bad: dict[str, list[str]] = {}
    for path in modules("pipeline"):
        name = module_name(path)
        layer = _layer_of(name)
        if layer is None:
            continue
        # The errors module must import nothing of ours; the other layers may use the vocabulary.
        found = [
            imported
            for imported in imports_of(path)
            for banned in FORBIDDEN[layer]
            if within(imported, banned) and not (layer != "pipeline.errors" and within(imported, layer))
        ]
        if layer == "pipeline.errors":
            found = [i for i in found if i != "pipeline.errors"]
        found = [i for i in found if not any(within(i, ok) for ok in ALLOWED.get(name, ()))]
        if found:
            bad[name] = sorted(set(found))
    assert not bad, f"imports across the layers of docs/architecture.md: {bad}"
