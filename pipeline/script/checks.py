"""Checks of meaning that a schema cannot express, run on the raw YAML data.

They run even when the shape has errors (so every problem is reported at once) and therefore
read the data defensively: anything of the wrong type was already reported by the schema.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import Problem
from pipeline.generation import MENTION_RE
from pipeline.script.model import ELEMENT_RE
from pipeline.script.yaml_source import Path_, YamlDocument

#: ``@name`` references: an ``@`` not preceded by a word character (so e-mail addresses pass).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac"})
S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SHOT_TEXT_FIELDS = ("action", "camera", "text", "sound")
#: The most shots × variants a script may ask for: one pass makes at most this many clips. It
#: bounds the work of ``plan`` (every request is built), which the YAML bounds alone do not: 2,000
#: shots and 5,000 variants fit in 50,000 values but would plan ten million requests.
MAX_CLIPS_PER_PASS = 10_000


def check_meaning(doc: YamlDocument, base_dir: Path, *, mirror: Mirror | None = None) -> list[Problem]:
    """Every problem of meaning in the script ``doc`` (assets resolved against ``base_dir``).

    ``mirror``: for a script read from a remote store, the local copy of that store; asset paths
    must then stay inside it (a remote script cannot use files of the machine it runs on).
    """
    data = doc.data if isinstance(doc.data, dict) else {}
    elements = data.get("elements") if isinstance(data.get("elements"), dict) else {}
    assert isinstance(elements, dict)
    names = [str(k) for k in elements]
    problems: list[Problem] = []
    problems += _unique_ids(doc, data, "narratives")
    problems += _unique_ids(doc, data, "variants")
    problems += _element_names(doc, names)
    problems += _mentions(doc, data, names)
    problems += _assets(doc, base_dir, mirror)
    problems += _finals(doc, data)
    problems += _archive(doc, data)
    problems += _size(doc, data)
    return problems


def _size(doc: YamlDocument, data: dict[str, Any]) -> list[Problem]:
    shots = sum(len(n["shots"]) for _, n in _items(data, "narratives") if isinstance(n.get("shots"), list))
    variants = data.get("variants")
    count = len(variants) if isinstance(variants, list) else 1
    if shots * count <= MAX_CLIPS_PER_PASS:
        return []
    where: Path_ = ("variants",) if isinstance(variants, list) else ("narratives",)
    return [
        doc.problem(
            where,
            f"{shots:,} shots × {count:,} variants ask for {shots * count:,} clips per pass; "
            f"a render script may ask for at most {MAX_CLIPS_PER_PASS:,}",
        )
    ]


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


@dataclass(frozen=True)
class AssetRef:
    """A field of the script that names a file: an element's image or voice, a start or end image."""

    loc: Path_
    value: Any  # as written; its type is the schema's to check
    suffixes: frozenset[str]

    @property
    def local_path(self) -> str | None:
        """The path written here when it names a local file (not blank, not a URL), else None."""
        value = self.value
        if not isinstance(value, str) or not value.strip() or "://" in value:
            return None
        return value


def asset_refs(data: Any) -> Iterator[AssetRef]:
    """Every field of the script data ``data`` that names an asset file, in document order."""
    if not isinstance(data, dict):
        return
    elements = data.get("elements")
    if isinstance(elements, dict):
        for name, element in elements.items():
            if not isinstance(element, dict):
                continue
            images = element.get("images")
            if isinstance(images, list):
                for i, image in enumerate(images):
                    yield AssetRef(("elements", str(name), "images", i), image, IMAGE_SUFFIXES)
            yield AssetRef(("elements", str(name), "voice"), element.get("voice"), AUDIO_SUFFIXES)
    for n, narrative in _items(data, "narratives"):
        for key in ("start_image", "end_image"):
            yield AssetRef(("narratives", n, key), narrative.get(key), IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Mirror:
    """A local directory holding a copy of a remote tree, such as ``s3://bucket``.

    A script read from there may only use assets of that tree; messages name them remotely.
    """

    local: Path
    remote: str

    def remote_name(self, file: Path) -> str | None:
        """The remote name of the local (resolved) ``file``, or None when it lies outside the mirror."""
        try:
            inside = file.relative_to(self.local.resolve())
        except ValueError:
            return None
        return f"{self.remote}/{inside.as_posix()}"


def _asset(doc: YamlDocument, ref: AssetRef, base_dir: Path, mirror: Mirror | None) -> list[Problem]:
    value = ref.value
    if not isinstance(value, str) or not value.strip():
        return []
    if value.startswith("https://"):
        return []
    if "://" in value:
        return [doc.problem(ref.loc, f"must be a local path or an https:// URL (got {value!r})")]
    file = (base_dir / value).resolve()
    looked_for = str(file)
    if mirror is not None:
        remote = mirror.remote_name(file)
        if remote is None or Path(value).is_absolute():
            return [
                doc.problem(
                    ref.loc,
                    f"must be a path relative to the script, inside {mirror.remote} (got {value!r}): "
                    f"a script read from {mirror.remote} can only use files stored there",
                )
            ]
        looked_for = remote
    if not file.is_file():
        return [doc.problem(ref.loc, f"file not found: {value} (looked for {looked_for})")]
    if file.suffix.lower() not in ref.suffixes:
        kinds = ", ".join(sorted(ref.suffixes))
        return [
            doc.problem(
                ref.loc, f"unsupported file type {file.suffix or '(none)'!r}; expected one of {kinds}"
            )
        ]
    return []


def _assets(doc: YamlDocument, base_dir: Path, mirror: Mirror | None) -> list[Problem]:
    return [p for ref in asset_refs(doc.data) for p in _asset(doc, ref, base_dir, mirror)]


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
