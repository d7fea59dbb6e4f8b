"""Checks of meaning that a schema cannot express, run on the raw YAML data.

They run even when the shape has errors (so every problem is reported at once) and therefore
read the data defensively: anything of the wrong type was already reported by the schema.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import Problem
from pipeline.script.model import ELEMENT_RE
from pipeline.script.yaml_source import Path_, YamlDocument

#: ``@name`` references: an ``@`` not preceded by a word character (so e-mail addresses pass).
MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9_-]*)")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac"})
S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SHOT_TEXT_FIELDS = ("action", "camera", "text", "sound")


def check_meaning(doc: YamlDocument, base_dir: Path) -> list[Problem]:
    """Every problem of meaning in the script ``doc`` (assets resolved against ``base_dir``)."""
    data = doc.data if isinstance(doc.data, dict) else {}
    elements = data.get("elements") if isinstance(data.get("elements"), dict) else {}
    assert isinstance(elements, dict)
    names = [str(k) for k in elements]
    problems: list[Problem] = []
    problems += _unique_ids(doc, data, "narratives")
    problems += _unique_ids(doc, data, "variants")
    problems += _element_names(doc, names)
    problems += _mentions(doc, data, names)
    problems += _assets(doc, data, elements, base_dir)
    problems += _finals(doc, data)
    problems += _archive(doc, data)
    return problems


def _items(data: dict[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    value = data.get(key)
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def _unique_ids(doc: YamlDocument, data: dict[str, Any], key: str) -> list[Problem]:
    seen: dict[str, int] = {}
    problems = []
    for i, item in _items(data, key):
        ident = item.get("id")
        if not isinstance(ident, str):
            continue
        if ident in seen:
            first = doc.line_of((key, seen[ident], "id"))
            problems.append(doc.problem((key, i, "id"), f"duplicate id {ident!r} (first at line {first})"))
        else:
            seen[ident] = i
    return problems


def _element_names(doc: YamlDocument, names: list[str]) -> list[Problem]:
    return [
        doc.problem(
            ("elements", name),
            f"element name {name!r} must be lowercase letters, digits, '-' or '_' (it is written @{name})",
        )
        for name in names
        if not ELEMENT_RE.fullmatch(name)
    ]


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if names:
        return f"; elements are: {', '.join(sorted(names))}"
    return "; the script defines no elements"


def _mentions(doc: YamlDocument, data: dict[str, Any], names: list[str]) -> list[Problem]:
    known = set(names)
    problems = []
    for n, narrative in _items(data, "narratives"):
        for s, shot in _items(narrative, "shots"):
            base: Path_ = ("narratives", n, "shots", s)
            texts: list[tuple[Path_, Any]] = [((*base, f), shot.get(f)) for f in SHOT_TEXT_FIELDS]
            for d, line in _items(shot, "dialogue"):
                texts += [((*base, "dialogue", d, f), line.get(f)) for f in ("line", "tone")]
                speaker = line.get("speaker")
                if isinstance(speaker, str):
                    bare = speaker.removeprefix("@")
                    looks_like_element = speaker.startswith("@") or ELEMENT_RE.fullmatch(speaker)
                    if looks_like_element and bare not in known:
                        problems.append(
                            doc.problem(
                                (*base, "dialogue", d, "speaker"),
                                f"speaker {speaker!r} looks like an element name but there is no element "
                                f"{bare!r}{_suggest(bare, names)}; write a free-text speaker with a capital "
                                "or several words (e.g. 'The narrator')",
                            )
                        )
            for path, text in texts:
                if not isinstance(text, str):
                    continue
                for match in MENTION_RE.finditer(text):
                    if match.group(1) not in known:
                        problems.append(
                            doc.problem(
                                path, f"unknown element @{match.group(1)}{_suggest(match.group(1), names)}"
                            )
                        )
    return problems


def _asset(
    doc: YamlDocument, path: Path_, value: Any, base_dir: Path, suffixes: frozenset[str]
) -> list[Problem]:
    if not isinstance(value, str) or not value.strip():
        return []
    if value.startswith("https://"):
        return []
    if "://" in value:
        return [doc.problem(path, f"must be a local path or an https:// URL (got {value!r})")]
    file = (base_dir / value).resolve()
    if not file.is_file():
        return [doc.problem(path, f"file not found: {value} (looked for {file})")]
    if file.suffix.lower() not in suffixes:
        kinds = ", ".join(sorted(suffixes))
        return [
            doc.problem(path, f"unsupported file type {file.suffix or '(none)'!r}; expected one of {kinds}")
        ]
    return []


def _assets(
    doc: YamlDocument, data: dict[str, Any], elements: dict[Any, Any], base_dir: Path
) -> list[Problem]:
    problems = []
    for name, element in elements.items():
        if not isinstance(element, dict):
            continue
        images = element.get("images")
        if isinstance(images, list):
            for i, image in enumerate(images):
                problems += _asset(doc, ("elements", str(name), "images", i), image, base_dir, IMAGE_SUFFIXES)
        problems += _asset(
            doc, ("elements", str(name), "voice"), element.get("voice"), base_dir, AUDIO_SUFFIXES
        )
    for n, narrative in _items(data, "narratives"):
        for key in ("start_image", "end_image"):
            problems += _asset(doc, ("narratives", n, key), narrative.get(key), base_dir, IMAGE_SUFFIXES)
    return problems


def _finals(doc: YamlDocument, data: dict[str, Any]) -> list[Problem]:
    budget = data.get("budget")
    if not isinstance(budget, dict):
        return []
    finals = budget.get("finals")
    variants = data.get("variants")
    count = len(variants) if isinstance(variants, list) else 1
    if isinstance(finals, int) and not isinstance(finals, bool) and finals > count:
        return [
            doc.problem(
                ("budget", "finals"),
                f"must be at most the number of variants ({count}) (got {finals})",
            )
        ]
    return []


def _archive(doc: YamlDocument, data: dict[str, Any]) -> list[Problem]:
    output = data.get("output")
    archive = output.get("archive") if isinstance(output, dict) else None
    if not isinstance(archive, str) or "://" not in archive:
        return []
    scheme, _, rest = archive.partition("://")
    if scheme != "s3":
        return [
            doc.problem(
                ("output", "archive"), f"must be s3://bucket/prefix or a local directory (got {archive!r})"
            )
        ]
    bucket = rest.split("/", 1)[0]
    if not S3_BUCKET_RE.fullmatch(bucket):
        return [doc.problem(("output", "archive"), f"{bucket!r} is not a valid S3 bucket name")]
    return []
