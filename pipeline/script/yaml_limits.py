"""Bounds on a render script's YAML, checked before anything recursive or expanding runs.

PyYAML expands aliases when it builds data (a "billion laughs" document of 9 × 9 aliases grows
without end), and its composer and our builder recurse once per nesting level (1,000 levels of
``[[[`` raise RecursionError; 100,000 levels overflow the C stack). So a script is first read as
a flat stream of parser events — libyaml's parser keeps its own stacks and never recurses — and
refused, at the line where a bound is crossed, before the composer runs:

- :data:`MAX_SCRIPT_BYTES`: the size of the file;
- :data:`MAX_DEPTH`: lists and mappings inside each other, counting what aliases bring in;
- :data:`MAX_NODES`: values once every alias is expanded (an alias counts the size of its
  anchor's whole subtree, computed as the anchor closes — nothing is ever expanded);
- :data:`MAX_TEXT_CHARS`: characters of scalar text once every alias is expanded, so that an
  alias repeating a long string cannot multiply the work of later checks;
- :data:`MAX_ALIASES`: ``*name`` references;
- and an alias to an anchor that contains it (a recursive structure) is refused outright.

A real script is far inside every bound (the largest example holds a few hundred values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import yaml

from pipeline.errors import Problem

#: The largest render script file, in bytes (1 MiB).
MAX_SCRIPT_BYTES: Final = 1_048_576
#: The deepest nesting of lists and mappings (a script needs 7: narratives → shots → dialogue).
MAX_DEPTH: Final = 64
#: The most values (scalars, lists, mappings) a script may hold once aliases are expanded.
MAX_NODES: Final = 50_000
#: The most characters of scalar text a script may hold once aliases are expanded.
MAX_TEXT_CHARS: Final = 2_000_000
#: The most aliases (``*name``) in a script.
MAX_ALIASES: Final = 1_000

Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def size_problem(file: str, raw: bytes) -> Problem | None:
    """A problem when ``raw`` is over :data:`MAX_SCRIPT_BYTES`, else None."""
    if len(raw) <= MAX_SCRIPT_BYTES:
        return None
    line = raw.count(b"\n", 0, MAX_SCRIPT_BYTES) + 1
    return Problem(
        file,
        line,
        "",
        f"the file is larger than {MAX_SCRIPT_BYTES:,} bytes (1 MiB), the most a render script may be "
        f"(the limit is crossed on this line)",
    )


@dataclass
class _Open:
    """A list or mapping whose end has not been read yet."""

    anchor: str | None
    nodes_before: int
    chars_before: int
    height: int = 0  # of its tallest child so far


@dataclass(frozen=True)
class _Anchored:
    """What an alias to a completed anchor brings in."""

    nodes: int
    chars: int
    height: int


class LimitExceeded(Exception):
    """A bound of this module was crossed; carries the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Counter:
    """Walks the event stream of a YAML text, counting what the composed data would hold."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.stack: list[_Open] = []
        self.anchors: dict[str, _Anchored] = {}
        self.nodes = 0
        self.chars = 0
        self.aliases = 0

    def refuse(self, event: yaml.Event, message: str) -> LimitExceeded:
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        return LimitExceeded(Problem(self.file, line, "", message))

    def add(self, event: yaml.Event, nodes: int, chars: int) -> None:
        self.nodes += nodes
        self.chars += chars
        if self.nodes > MAX_NODES:
            raise self.refuse(
                event,
                f"the YAML holds more than {MAX_NODES:,} values once aliases (*name) are expanded, "
                "the most a render script may hold (an alias counts everything its anchor holds)",
            )
        if self.chars > MAX_TEXT_CHARS:
            raise self.refuse(
                event,
                f"the YAML holds more than {MAX_TEXT_CHARS:,} characters of text once aliases (*name) "
                "are expanded, the most a render script may hold",
            )

    def close(self, anchor: str | None, nodes: int, chars: int, height: int) -> None:
        """A node (of ``nodes`` values, ``chars`` characters, ``height`` levels) is complete."""
        if anchor is not None:
            self.anchors[anchor] = _Anchored(nodes, chars, height)
        if self.stack:
            parent = self.stack[-1]
            parent.height = max(parent.height, height)

    def too_deep(self, event: yaml.Event) -> LimitExceeded:
        return self.refuse(
            event,
            f"lists and mappings nest more than {MAX_DEPTH} levels deep here (counting what aliases "
            "bring in), the most a render script may nest; is a bracket left open?",
        )

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.anchors.clear()  # as the composer does: anchors belong to one document
        elif isinstance(event, yaml.ScalarEvent):
            self.add(event, 1, len(event.value))
            self.close(event.anchor, 1, len(event.value), 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(self.stack) + 1 > MAX_DEPTH:
                raise self.too_deep(event)
            self.add(event, 1, 0)
            self.stack.append(_Open(event.anchor, self.nodes - 1, self.chars))
        elif isinstance(event, yaml.CollectionEndEvent):
            opened = self.stack.pop()
            self.close(
                opened.anchor,
                self.nodes - opened.nodes_before,
                self.chars - opened.chars_before,
                opened.height + 1,
            )
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event)

    def alias(self, event: yaml.AliasEvent) -> None:
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise self.refuse(
                event, f"more than {MAX_ALIASES:,} aliases (*name), the most a render script may use"
            )
        name = event.anchor
        target = self.anchors.get(name) if name is not None else None
        if target is None:
            if any(o.anchor == name for o in self.stack):
                raise self.refuse(
                    event,
                    f"alias *{name} refers to a list or mapping that contains it; "
                    "a render script cannot be recursive",
                )
            # An undefined alias: the composer reports it, with its own words.
            target = _Anchored(1, 0, 0)
        if len(self.stack) + target.height > MAX_DEPTH:
            raise self.too_deep(event)
        self.add(event, target.nodes, target.chars)
        self.close(None, target.nodes, target.chars, target.height)


def check_limits(file: str, text: str) -> None:
    """Raise :class:`LimitExceeded` when ``text`` crosses a bound of this module.

    Reads parser events only (no composing, no expansion), so the work is linear in the text
    and stops at the first bound crossed. YAML syntax errors propagate as ``yaml.YAMLError``.
    """
    counter = _Counter(file)
    loader = Loader(text)
    try:
        while loader.check_event():
            counter.feed(loader.get_event())  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
    finally:
        loader.dispose()
