"""Loading a render script: every problem at once, each as ``FILE:LINE: field.path: message``.

Example::

    >>> script = load_script("configs/weekly-campaign.yaml").script   # doctest: +SKIP
    >>> script = load_script("s3://my-bucket/campaigns/summer.yaml").script   # doctest: +SKIP

A script may be a local path or an ``s3://bucket/key`` URI; the latter is copied locally with
its assets first (:mod:`pipeline.script.source`) and is still named by its URI in messages.

Three layers of checks, all collected before anything is raised:

1. the file itself (exists, within the input limits of :mod:`pipeline.script.yaml_limits`,
   UTF-8, YAML syntax, plain values only, one document, a mapping, no duplicate keys);
2. the shape (pydantic models, strict types, unknown keys with a did-you-mean hint, money
   finite in whole cents under a ceiling; type errors name the YAML 1.1 trap behind them);
3. meaning (unique ids, ``@name`` references and speakers, asset files, finals ≤ variants,
   clips per pass bounded, and prompts within the provider's limit).
"""

from __future__ import annotations

import difflib
import hashlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pipeline.errors import InputNotFound, Problem, PromptTooLong, ScriptError
from pipeline.script import checks
from pipeline.script.model import Script
from pipeline.script.money import show_number
from pipeline.script.source import fetch_script
from pipeline.script.yaml_limits import MAX_SCRIPT_BYTES
from pipeline.script.yaml_source import BRIEF_CHARS, Path_, YamlDocument, brief, format_path, parse_yaml
from pipeline.script.yaml_traps import yaml_trap


@dataclass(frozen=True)
class LoadedScript:
    """A valid script with where it came from."""

    script: Script
    #: The script as named by the user: a path, or an ``s3://`` URI (as in messages).
    file: str
    #: SHA-256 of the script's bytes, wherever they were read from.
    sha256: str
    document: YamlDocument
    #: The local directory asset paths are relative to (for a script from S3: its local copy's).
    base_dir: Path


def read_script_bytes(path: str | Path) -> bytes:
    """The bytes of a script file, or InputNotFound (exit 66) naming it.

    At most :data:`~pipeline.script.yaml_limits.MAX_SCRIPT_BYTES` + 1 bytes are read: a larger
    file is refused by :func:`~pipeline.script.yaml_source.parse_yaml` without being read whole.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFound(f"{p}: no such file")
    if p.is_dir():
        raise InputNotFound(f"{p}: is a directory, expected a render script file")
    try:
        with p.open("rb") as f:
            # One byte past the bound is enough to refuse the file (the parser names the limit).
            return f.read(MAX_SCRIPT_BYTES + 1)
    except OSError as exc:
        raise InputNotFound(f"{p}: cannot be read ({exc.strerror})") from exc


def load_script(path: str | Path, *, cache_dir: Path | None = None) -> LoadedScript:
    """Load and fully check the render script at ``path``: a local path or ``s3://bucket/key``.

    A script from S3 and its assets are copied under ``cache_dir`` (default
    ``.klingflow/scripts``). Raises InputNotFound (66) when the file or object is missing,
    ScriptError (65) listing every problem, and for S3 the errors of
    :func:`pipeline.script.source.fetch_script` (bad settings, credentials, bucket, server).
    """
    source = fetch_script(path, cache_dir=cache_dir)
    raw = read_script_bytes(source.path)
    return parse_script(raw, file=source.reference, base_dir=source.path.parent, mirror=source.mirror)


def parse_script(
    raw: bytes, *, file: str, base_dir: Path, mirror: checks.Mirror | None = None
) -> LoadedScript:
    """Check the script in ``raw`` (named ``file`` in messages; assets relative to ``base_dir``).

    ``mirror``: for a script read from a remote store, the local copy its assets must come from.
    """
    doc = parse_yaml(file, raw)
    problems = list(doc.problems)
    if doc.data is None:
        # Without a problem of its own, the document is a null (``~``, or a lone ``&anchor``).
        raise ScriptError(
            problems or [Problem(file, 1, "", "a render script must be a YAML mapping of keys (got null)")]
        )
    if not isinstance(doc.data, dict):
        problems.append(
            Problem(file, 1, "", f"a render script must be a YAML mapping of keys (got {_kind(doc.data)})")
        )
        raise ScriptError(problems)

    script: Script | None = None
    try:
        script = Script.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(_translate(doc, err) for err in exc.errors(include_url=False))
    problems.extend(checks.check_meaning(doc, base_dir, mirror=mirror))
    if script is not None and not problems:
        problems.extend(_check_prompts(doc, script))
    if problems:
        raise ScriptError(_unique(problems))
    assert script is not None
    return LoadedScript(
        script=script, file=file, sha256=hashlib.sha256(raw).hexdigest(), document=doc, base_dir=base_dir
    )


def _check_prompts(doc: YamlDocument, script: Script) -> list[Problem]:
    # Imported here: planning depends on the model, not the other way round.
    from pipeline.planning.plan import build_prompts

    try:
        build_prompts(script)
    except PromptTooLong as exc:
        loc: Path_ = ("narratives", exc.narrative_index, "shots", exc.shot_index)
        return [doc.problem(loc, str(exc))]
    return []


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# --- pydantic errors → problems -------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float):
        return show_number(value)
    if isinstance(value, str):
        return brief(value)
    if isinstance(value, int):
        return brief(value)
    text = str(value)  # a date, say: shown as YAML read it
    return text if len(text) <= BRIEF_CHARS else text[: BRIEF_CHARS - 1] + "…"


def _plain(number: Any) -> Any:
    """``0.0`` → ``0`` for messages about whole bounds."""
    return int(number) if isinstance(number, float) and number.is_integer() else number


_TYPE_MESSAGES = {
    ("int_type", "int_from_float", "int_parsing"): "must be a whole number",
    ("float_type", "float_parsing"): "must be a number",
    ("bool_type", "bool_parsing"): "must be true or false",
    ("string_type",): "must be text",
    ("list_type",): "must be a list",
    ("dict_type", "model_type", "model_attributes_type"): "must be a mapping",
}


def _translate(doc: YamlDocument, err: ErrorDetails) -> Problem:
    problem = _translate_plainly(doc, err)
    hint = yaml_trap(doc, tuple(err["loc"]), err["type"], err.get("input"))
    if hint:
        return Problem(problem.file, problem.line, problem.path, f"{problem.message}: {hint}")
    return problem


def _translate_plainly(doc: YamlDocument, err: ErrorDetails) -> Problem:
    loc: Path_ = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = _kind(err.get("input"))
    if kind == "missing":
        # A missing key has no line of its own: point at the mapping that lacks it.
        return Problem(doc.file, doc.line_of(loc[:-1]), format_path(loc), "required field is missing")
    if kind == "extra_forbidden":
        return doc.problem(loc, _unknown_key(str(loc[-1]), loc[:-1]))
    if kind == "literal_error":
        return doc.problem(loc, f"must be {ctx.get('expected')} (got {got})")
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return doc.problem(loc, f"must have at least {n} item{'s' if n != 1 else ''}")
    if kind == "greater_than":
        return doc.problem(loc, f"must be greater than {_kind(_plain(ctx.get('gt')))} (got {got})")
    if kind == "greater_than_equal":
        return doc.problem(loc, f"must be at least {_kind(_plain(ctx.get('ge')))} (got {got})")
    for kinds, message in _TYPE_MESSAGES.items():
        if kind in kinds:
            return doc.problem(loc, f"{message} (got {got})")
    if "field" in ctx:
        loc = (*loc, str(ctx["field"]))
    return doc.problem(loc, err["msg"])


def _unknown_key(key: str, parent: Path_) -> str:
    allowed = _fields_at(parent)
    if not allowed:
        return f"unknown key {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (expected one of: {', '.join(allowed)})"


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from a type annotation."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp


def _fields_at(loc: Path_) -> list[str]:
    """The keys allowed in the mapping at ``loc`` of a script (empty if unknown)."""
    tp: Any = Script
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return []
            tp = field.annotation
        elif typing.get_origin(tp) is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []
