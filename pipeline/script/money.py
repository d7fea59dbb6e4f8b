"""Amounts of money in a render script: finite US dollars, in whole cents, under a ceiling.

Every money field of the script (today ``budget.limit_usd``) is an :data:`Usd`: a number
greater than 0, finite (``.inf`` and ``.nan`` are YAML numbers too), in whole cents, and at most
:data:`MAX_USD`. The job store keeps amounts as integer micro-USD in 64-bit columns: the
ceiling ($1,000,000, i.e. 10^12 micro-USD) keeps every sum a run can make far inside 2^63
(about 9.2 × 10^18), and keeps exact ``Decimal`` arithmetic away from 308-digit exponents.

Write amounts as plain numbers (``40``, ``40.5``, ``40.00``). YAML 1.1, which PyYAML reads,
takes ``1e2`` as text (its numbers with an exponent need a ``.`` and a signed exponent,
``1.0e+2``); the loader answers that with a message saying to write ``100`` instead.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Final

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from pipeline.pricing import CENT

#: The largest amount a money field of a script may hold, in US dollars.
MAX_USD: Final = Decimal(1_000_000)


def show_number(value: float) -> str:
    """A number as a script would write it: ``.inf``, ``.nan``, ``100``, ``0.001``, ``1e+308``."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if float(value).is_integer() and abs(value) < 1e16:  # an int has no is_integer() before 3.12
        return str(int(value))
    return repr(value)


def check_usd(value: float) -> float:
    """``value`` when it is a valid amount of US dollars, else a PydanticCustomError saying why."""
    got = {"got": show_number(value)}
    if not math.isfinite(value):
        raise PydanticCustomError("usd_finite", "must be a finite amount of US dollars (got {got})", got)
    if value <= 0:
        raise PydanticCustomError("usd_positive", "must be greater than 0 (got {got})", got)
    amount = Decimal(str(value))  # the shortest decimal that reads back as value: what was written
    if amount > MAX_USD:
        raise PydanticCustomError(
            "usd_ceiling",
            "must be at most {max} (US dollars: the ceiling of any amount in a render script) (got {got})",
            {"max": f"{MAX_USD:,}", **got},
        )
    if amount != amount.quantize(CENT):
        raise PydanticCustomError("usd_cents", "must be in whole cents (got {got})", got)
    return value


#: A money field of a render script, in US dollars.
Usd = Annotated[float, AfterValidator(check_usd)]
