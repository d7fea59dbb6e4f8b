"""Naming the YAML 1.1 traps behind a type error, so the message says how to fix the script.

PyYAML reads YAML 1.1, where some unquoted words are not text:

- ``16:9`` is a base-60 ("sexagesimal") number, 16 × 60 + 9 = 969;
- ``yes``, ``no``, ``on``, ``off`` (and ``true``/``false``) are booleans;
- ``1e2`` is *text*: a 1.1 number with an exponent needs a ``.`` and a sign (``1.0e+2``).

The loader appends the hint of :func:`yaml_trap` to the schema's message.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.script.yaml_source import Path_, YamlDocument, brief

#: Schema errors that mean "expected text (or one of some words)".
_TEXT_ERRORS = frozenset({"string_type", "literal_error", "pattern"})
#: Schema errors that mean "expected a number".
_NUMBER_ERRORS = frozenset({"float_type", "float_parsing", "int_type", "int_parsing"})
_SEXAGESIMAL_RE = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
#: A number with an exponent as YAML 1.2 (and JSON, and Python) would read it.
_EXPONENT_RE = re.compile(r"[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)[eE][-+]?[0-9]+")
#: The longest plain form of an exponent number worth suggesting.
_PLAIN_CHARS = 24


def yaml_trap(doc: YamlDocument, loc: Path_, error_type: str, value: Any) -> str | None:
    """A hint naming the YAML trap that turned the field at ``loc`` into ``value``, or None."""
    if error_type in _TEXT_ERRORS and not isinstance(value, str):
        raw = doc.plain.get(loc)
        if raw is None:
            return None
        quoted = f'write "{raw}" in quotes' if len(raw) <= _PLAIN_CHARS else "write it in quotes"
        if isinstance(value, int | float) and not isinstance(value, bool) and _SEXAGESIMAL_RE.fullmatch(raw):
            return f"YAML 1.1 reads the unquoted {raw} as a base-60 number ({brief(value)}); {quoted}"
        if isinstance(value, bool):
            if raw.lower() in {"true", "false"}:
                return None  # written as a boolean: no trap to name
            return f"YAML 1.1 reads the unquoted {raw} as {str(value).lower()}; {quoted}"
        if value is not None:
            shown = raw if len(raw) <= _PLAIN_CHARS else raw[: _PLAIN_CHARS - 1] + "…"
            return f"YAML reads the unquoted {shown} as a {type(value).__name__}; {quoted} if it is text"
        return None
    if error_type in _NUMBER_ERRORS and isinstance(value, str) and _EXPONENT_RE.fullmatch(value.strip()):
        return (
            f"YAML 1.1 reads {value.strip()} as text, not a number (its numbers with an exponent need "
            f"a '.' and a signed exponent, such as 1.0e+2); {_plain_number(value)}"
        )
    return None


def _plain_number(text: str) -> str:
    try:
        number = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        return "write the number without an exponent"
    # Checked before formatting: the plain form of 1e999999999 has a billion digits.
    if not -_PLAIN_CHARS < number.adjusted() < _PLAIN_CHARS:
        return "write the number without an exponent"
    plain = format(number.normalize(), "f")
    if len(plain) > _PLAIN_CHARS:
        return "write the number without an exponent"
    return f"write {plain}"
