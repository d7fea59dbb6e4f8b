"""Reading YAML while remembering where every value came from.

PyYAML's ``safe_load`` forgets line numbers and silently keeps the last of duplicate keys. Here
the file is composed into nodes (libyaml when available), duplicate keys are reported, and the
data is built alongside a map from each field path to its line, so that every problem can be
reported as ``FILE:LINE: field.path: message``.

Hostile input is refused before PyYAML composes anything (:mod:`pipeline.script.yaml_limits`:
size, nesting depth, values and text once aliases are expanded, alias count, recursive aliases).
Only plain values are built: text, numbers, true/false, null, dates, lists and mappings; any
other tag (``!foo``, ``!!python/...``, merge keys ``<<``) is a problem, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline.errors import Problem
from pipeline.script.yaml_limits import LimitExceeded, Loader, check_limits, size_problem

Path_ = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
#: Tags of the values a render script is made of (implicit ones, or written as ``!!int`` etc.).
SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
COLLECTION_TAGS = frozenset({_TAG + "map", _TAG + "seq"})
#: The longest repr of a value quoted in a message (a hostile script may hold megabytes).
BRIEF_CHARS = 80
#: The longest number written in a render script, in characters (a seed needs 10).
MAX_NUMBER_CHARS = 100
_NUMBER_TAGS = frozenset({_TAG + "int", _TAG + "float"})
_TOO_LARGE = f"too large a number (a render script's numbers are at most {MAX_NUMBER_CHARS} characters long)"


def format_path(path: Path_) -> str:
    """``('narratives', 0, 'shots', 2, 'duration')`` → ``narratives[0].shots[2].duration``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class YamlDocument:
    """Plain data from a YAML file plus the line of every path in it."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: The text of unquoted scalars that YAML read as something other than text (``16:9`` → 969,
    #: ``off`` → false), so messages can name the trap.
    plain: dict[Path_, str] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of ``path``, or of its nearest ancestor that has one (1 for the root)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def problem(self, path: Path_, message: str) -> Problem:
        """A Problem located at ``path``."""
        return Problem(self.file, self.line_of(path), format_path(path), message)


def _decode(file: str, raw: bytes) -> tuple[str | None, Problem | None]:
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        return None, Problem(
            file, line, "", f"the file is not UTF-8 text (byte 0x{byte} at offset {exc.start})"
        )


def brief(value: Any) -> str:
    """``repr(value)``, shortened to :data:`BRIEF_CHARS` for messages."""
    if isinstance(value, int) and value.bit_length() > 256:
        # repr of a huge int is slow, and past 4,300 digits a ValueError (CPython's limit).
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= BRIEF_CHARS else text[: BRIEF_CHARS - 1] + "…"


def parse_yaml(file: str, raw: bytes) -> YamlDocument:
    """Parse ``raw`` (the bytes of ``file``) into a :class:`YamlDocument`.

    Problems (too large, not UTF-8, a bound of :mod:`~pipeline.script.yaml_limits` crossed, YAML
    syntax, unsupported tags, duplicate keys, several documents) are collected in
    ``document.problems``; ``data`` is None when nothing usable could be read.
    """
    doc = YamlDocument(file=file, data=None)
    too_large = size_problem(file, raw)
    if too_large is not None:
        doc.problems.append(too_large)
        return doc
    text, problem = _decode(file, raw)
    if text is None:
        assert problem is not None
        doc.problems.append(problem)
        return doc
    try:
        # Bounds first: composing recurses per level and the builder expands aliases.
        check_limits(file, text)
        nodes = list(yaml.compose_all(text, Loader=Loader))
    except LimitExceeded as exc:
        doc.problems.append(exc.problem)
        return doc
    except yaml.MarkedYAMLError as exc:
        doc.problems.append(_syntax_problem(file, text, exc))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(file, 1, "", f"YAML error: {exc}"))
        return doc
    if len(nodes) > 1:
        doc.problems.append(
            Problem(
                file, nodes[1].start_mark.line + 1, "", "the file holds several YAML documents; expected one"
            )
        )
    if not nodes or nodes[0] is None:
        doc.problems.append(
            Problem(file, 1, "", "the file is empty; expected a render script (a YAML mapping)")
        )
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(nodes[0], ())
    return doc


def _syntax_problem(file: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
    if mark is not None and "\t" in _line_text(text, mark.line)[: mark.column + 1]:
        # libyaml's words ("found character that cannot start any token") do not say it is a tab.
        reason += " (a tab: YAML does not allow tabs for indentation; indent with spaces)"
    return Problem(file, line, "", f"YAML syntax error: {reason}")


def _line_text(text: str, index: int) -> str:
    start = 0
    for _ in range(index):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


class _Unsupported(Exception):
    """A node the builder refuses (its problem is already recorded)."""


class _Builder:
    """Turns composed nodes into plain data, recording lines, duplicate keys and bad tags.

    Recursive, but only over documents whose depth and expanded size
    :func:`~pipeline.script.yaml_limits.check_limits` has bounded.
    """

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        try:
            if isinstance(node, yaml.MappingNode):
                self._check_tag(node, path, COLLECTION_TAGS)
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                self._check_tag(node, path, COLLECTION_TAGS)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.ScalarNode)  # the only other kind of node
            return self._scalar(node, path)
        except _Unsupported:
            return None  # reported; the schema's complaint about a null would only repeat it

    def _problem(self, node: yaml.Node, path: Path_, message: str) -> _Unsupported:
        self.doc.problems.append(Problem(self.doc.file, node.start_mark.line + 1, format_path(path), message))
        return _Unsupported(message)

    def _check_tag(self, node: yaml.Node, path: Path_, allowed: frozenset[str]) -> None:
        if node.tag in allowed:
            return
        if node.tag == _TAG + "merge":
            raise self._problem(
                node,
                path,
                "merge keys (<<) are not supported; write the keys out (defaults and variant "
                "overrides exist for shared settings)",
            )
        shown = node.tag.replace(_TAG, "!!")
        raise self._problem(
            node,
            path,
            f"unsupported YAML tag {brief(shown)}: a render script holds only text, numbers, "
            "true/false, lists and mappings (quote the value if it is text)",
        )

    def _scalar(self, node: yaml.ScalarNode, path: Path_, *, key: bool = False) -> Any:
        self._check_tag(node, path, SCALAR_TAGS)
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            # Checked before constructing: PyYAML computes a base-60 number (1:2:3:…) part by
            # part, in time quadratic in its length.
            raise self._problem(node, path, _TOO_LARGE)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, ArithmeticError, LookupError, AttributeError, TypeError) as exc:
            # An explicit tag on text that is not of its kind (``!!int zz``, ``!!bool maybe``):
            # PyYAML's constructors fail with whatever Python raised.
            shown = node.tag.replace(_TAG, "!!")
            raise self._problem(
                node, path, f"{brief(node.value)} is not a valid {shown} value ({type(exc).__name__})"
            ) from exc
        if isinstance(value, int) and abs(value) >= 10**MAX_NUMBER_CHARS:
            # Base-60 ints (1:2:3:…) grow without a digit limit; later str() would raise.
            raise self._problem(node, path, _TOO_LARGE)
        if not key and not node.style and node.tag != _TAG + "str":  # plain: None, or "" from libyaml
            self.doc.plain[path] = node.value
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                try:
                    key = self._scalar(key_node, path, key=True)
                except _Unsupported:
                    continue
            else:
                key = None
            if not isinstance(key, str | int | float | bool):
                self.doc.problems.append(
                    Problem(
                        self.doc.file, line, format_path(path), f"keys must be plain text (got {brief(key)})"
                    )
                )
                continue
            if key in first_line:
                self.doc.problems.append(
                    Problem(
                        self.doc.file,
                        line,
                        format_path((*path, str(key))),
                        f"duplicate key {brief(key)} (first at line {first_line[key]})",
                    )
                )
                continue
            first_line[key] = line
            child: Path_ = (*path, str(key))
            # Set before building the value: errors about a field point at the field's key,
            # not at the first line of its (mapping) value.
            self.doc.lines[child] = line
            out[key] = self.build(value_node, child)
        return out
