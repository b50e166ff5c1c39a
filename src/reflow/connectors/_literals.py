"""Values rendered as SQL literals, for SQL that must carry its values in its text.

Only ever called with values, never with SQL: a string becomes a quoted literal whose
quotes (and, where the dialect escapes with it, backslashes) are doubled, so no value
can end the literal early.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable
from typing import Any


class UnsafeLiteral(ValueError):
    """The value cannot be written as a literal (NUL byte, NaN, unknown type)."""


def standard_literal(value: Any, *, backslash_escapes: Callable[[], bool]) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsafeLiteral(f"{value!r} has no SQL literal")
        return repr(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise UnsafeLiteral(f"{value!r} has no SQL literal")
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return string_literal(value.isoformat(sep=" "), backslash_escapes=backslash_escapes)
    if isinstance(value, dt.date):
        return string_literal(value.isoformat(), backslash_escapes=backslash_escapes)
    if isinstance(value, str):
        return string_literal(value, backslash_escapes=backslash_escapes)
    raise UnsafeLiteral(f"values of type {type(value).__name__} have no SQL literal")


def string_literal(value: str, *, backslash_escapes: Callable[[], bool]) -> str:
    if "\x00" in value:
        raise UnsafeLiteral("a string value must not contain a NUL character")
    body = value.replace("'", "''")
    # Only ask the database when it matters: most values hold no backslash.
    if "\\" in value and backslash_escapes():
        body = body.replace("\\", "\\\\")
    return "'" + body + "'"
