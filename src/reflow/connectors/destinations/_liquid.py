"""Census's Liquid dialect for HTTP payloads (reference §2.3): strict undefined, the
``json``/``sha256``/``base64``/``only``/``except``/``keys`` filters, and JSON-mode
escaping of string values. Parse errors and unknown columns name a line and column."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError


class JsonStr(str):
    """A string value JSON-escaped for use inside a JSON string literal, as Census does
    in JSON payload mode; ``original`` is what the ``json``/``sha256``/``base64`` see."""

    original: str

    def __new__(cls, value: str) -> JsonStr:
        obj = super().__new__(cls, json.dumps(value, ensure_ascii=False)[1:-1])
        obj.original = value
        return obj


def _plain(value: Any) -> Any:
    if isinstance(value, JsonStr):
        return value.original
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def escaped(value: Any) -> Any:
    if isinstance(value, str):
        return JsonStr(value)
    if isinstance(value, dict):
        return {k: escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escaped(v) for v in value]
    return value


def json_default(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _pick(value: Any, keys: tuple[Any, ...], keep: bool) -> dict[str, Any]:
    names = {k for key in keys for k in (key if isinstance(key, list | dict) else [key])}
    return {k: v for k, v in dict(value).items() if (k in names) == keep}


def _make_env() -> Environment:
    env = Environment(undefined=StrictUndefined)
    env.filters["json"] = lambda v: json.dumps(_plain(v), default=json_default)
    env.filters["sha256"] = lambda v: hashlib.sha256(str(_plain(v)).encode()).hexdigest()
    env.filters["base64"] = lambda v: base64.b64encode(str(_plain(v)).encode()).decode()
    env.filters["only"] = lambda v, *keys: _pick(v, keys, True)
    env.filters["except"] = lambda v, *keys: _pick(v, keys, False)
    env.filters["keys"] = lambda v: list(dict(v))
    return env


LIQUID = _make_env()


def position(source: str, index: int) -> str:
    """``line L, column C`` (1-based) of a character index into ``source``."""
    line = source.count("\n", 0, index) + 1
    return f"line {line}, column {index - (source.rfind(chr(10), 0, index) + 1) + 1}"


def parse_template(source: str) -> Any:
    """Parse a Liquid template, or raise ValueError naming the line and column (1-based)."""
    try:
        return LIQUID.from_string(source)
    except LiquidError as exc:
        context = exc.context()
        if context is None:  # e.g. a missing end tag: the problem is at the end
            lines = source.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
        else:
            line, column = context[0], context[1] + 1
        raise ValueError(
            f"invalid Liquid template at line {line}, column {column}: {exc.message}"
        ) from None


def check_variables(source: str, *, allowed: set[str], columns: set[str] | None) -> None:
    """Raise ValueError, with the position, for a global variable other than ``allowed``
    or a ``record[...]`` column not in ``columns`` (None: columns are not known)."""
    for name, uses in parse_template(source).analyze().globals.items():
        for use in uses:
            where = position(source, use.span.index)
            if name not in allowed:
                known = " and ".join(f"`{a}`" for a in sorted(allowed))
                raise ValueError(f"unknown variable `{name}` at {where}; the template sees {known}")
            column = use.segments[1] if name == "record" and len(use.segments) > 1 else None
            if columns is not None and isinstance(column, str) and column not in columns:
                raise ValueError(
                    f"record[{column!r}] at {where} is not a mapped field; "
                    f"mapped: {', '.join(sorted(columns)) or 'none'}"
                )
