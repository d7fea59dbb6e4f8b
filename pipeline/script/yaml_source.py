"""Reading YAML while remembering where every value came from.

PyYAML's ``safe_load`` forgets line numbers and silently keeps the last of duplicate keys. Here
the file is composed into nodes (libyaml when available), duplicate keys are reported, and the
data is built alongside a map from each field path to its line, so that every problem can be
reported as ``FILE:LINE: field.path: message``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline.errors import Problem

Path_ = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


def parse_yaml(file: str, raw: bytes) -> YamlDocument:
    """Parse ``raw`` (the bytes of ``file``) into a :class:`YamlDocument`.

    Problems (not UTF-8, YAML syntax, duplicate keys, several documents) are collected in
    ``document.problems``; ``data`` is None when nothing usable could be read.
    """
    text, problem = _decode(file, raw)
    doc = YamlDocument(file=file, data=None)
    if text is None:
        assert problem is not None
        doc.problems.append(problem)
        return doc
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        doc.problems.append(Problem(file, line, "", f"YAML syntax error: {reason}"))
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


class _Builder:
    """Turns composed nodes into plain data, recording lines and duplicate keys."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = (
                self.constructor.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            )
            if not isinstance(key, str | int | float | bool):
                self.doc.problems.append(
                    Problem(self.doc.file, line, format_path(path), f"keys must be plain text (got {key!r})")
                )
                continue
            if key in first_line:
                self.doc.problems.append(
                    Problem(
                        self.doc.file,
                        line,
                        format_path((*path, str(key))),
                        f"duplicate key {key!r} (first at line {first_line[key]})",
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
