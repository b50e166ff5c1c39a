"""Segment ``molecules`` -> a SQL filter over a model or table.

Pure code: the dialect (a source connector) quotes identifiers and renders values as
literals; this module never pastes API input into SQL itself. Column names must be
columns of the base object; values go through ``dialect.sql_literal``; operators are
a closed set. Every error names the path of the offending molecule.

The tree (Census §9.2): a list of items joined by AND unless the list holds one
operation string ``"OR"`` (or ``"AND"``); an item is an atomic molecule
``{attribute, attribute_type, operator, value}``, a nested list (a group), or a
related-segment molecule ``{filter_segment_id, is_member}``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from reflow.connectors._literals import UnsafeLiteral


class Dialect(Protocol):
    def quote_identifier(self, name: str) -> str: ...

    def sql_literal(self, value: Any) -> str: ...


class SegmentError(ValueError):
    """A molecule tree that cannot be compiled; the message names its path."""


#: A related segment's id -> its molecules (same base object), or raise SegmentError.
ResolveSegment = Callable[[int], list[Any]]

Scalar = str | int | float | bool

# operator -> SQL comparison, for operators taking one scalar value
_COMPARE = {
    "is": "=",
    "equals": "=",
    "exactly": "=",
    "isnot": "<>",
    "notequals": "<>",
    "doesnotequal": "<>",
    "lessthan": "<",
    "greaterthan": ">",
    "lessthanorequal": "<=",
    "greaterthanorequal": ">=",
    "before": "<",
    "after": ">",
}
_LIKE = {
    "contains": ("%", "%", False),
    "doesnotcontain": ("%", "%", True),
    "startswith": ("", "%", False),
    "endswith": ("%", "", False),
}
_NO_VALUE = {
    "isnull": "{c} IS NULL",
    "isnotnull": "{c} IS NOT NULL",
    "isblank": "({c} IS NULL OR {c} = '')",
    "isnotblank": "({c} IS NOT NULL AND {c} <> '')",
    "istrue": "{c} = TRUE",
    "isfalse": "{c} = FALSE",
}
_DAYS = ("morethandays", "lessthandays", "exactlydays")
_LIST = ("containsanyof", "in", "notin")
OPERATORS: tuple[str, ...] = (
    *_COMPARE,
    *_LIKE,
    *_NO_VALUE,
    *_DAYS,
    *_LIST,
    "on",
    "between",
)
_ESCAPE = "!"
_DAYS_AGO = re.compile(r"^\s*days_ago\s*:\s*(\d+)\s*$")


@dataclass
class Compiler:
    dialect: Dialect
    columns: Collection[str]
    resolve_segment: ResolveSegment | None = None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    _stack: list[int] = field(default_factory=list)

    def where(self, molecules: Any, path: str = "molecules") -> str:
        if not isinstance(molecules, list):
            raise SegmentError(f"{path} must be an array")
        joiner, parts = "AND", []
        ops = {m.upper() for m in molecules if isinstance(m, str)}
        if ops - {"AND", "OR"}:
            bad = next(
                m for m in molecules if isinstance(m, str) and m.upper() not in ("AND", "OR")
            )
            raise SegmentError(f'{path}: {bad!r} is not an operation; use "AND" or "OR"')
        if len(ops) > 1:
            raise SegmentError(f"{path} mixes AND and OR; nest a group (an array) instead")
        if ops:
            joiner = ops.pop()
        for i, item in enumerate(molecules):
            if not isinstance(item, str):
                parts.append(self._item(item, f"{path}[{i}]"))
        if not parts:
            return "1 = 1"
        return "(" + f" {joiner} ".join(parts) + ")"

    def _item(self, item: Any, path: str) -> str:
        if isinstance(item, list):
            return self.where(item, path)
        if not isinstance(item, dict):
            raise SegmentError(f'{path} must be a molecule object, an array or "AND"/"OR"')
        if "filter_segment_id" in item:
            return self._related(item, path)
        if "relationship_id" in item:
            raise SegmentError(f"{path}: relationship molecules are not supported")
        return self._atom(item, path)

    def _related(self, item: dict[str, Any], path: str) -> str:
        seg_id, member = item["filter_segment_id"], item.get("is_member", True)
        if not isinstance(seg_id, int) or isinstance(seg_id, bool):
            raise SegmentError(f"{path}.filter_segment_id must be an integer")
        if not isinstance(member, bool):
            raise SegmentError(f"{path}.is_member must be a boolean")
        if self.resolve_segment is None:
            raise SegmentError(f"{path}: related segments are not available here")
        if seg_id in self._stack:
            raise SegmentError(f"{path}.filter_segment_id: segment {seg_id} refers to itself")
        self._stack.append(seg_id)
        try:
            inner = self.where(self.resolve_segment(seg_id), f"{path}<segment {seg_id}>")
        finally:
            self._stack.pop()
        # CASE keeps NULL conditions out of the membership test in every dialect.
        return f"(CASE WHEN {inner} THEN 1 ELSE 0 END = {1 if member else 0})"

    def _atom(self, atom: dict[str, Any], path: str) -> str:
        kind = atom.get("attribute_type", "column")
        if kind == "sql":
            sql = atom.get("value")
            if not isinstance(sql, str) or not sql.strip():
                raise SegmentError(f"{path}.value must be a SQL condition for attribute_type sql")
            # Same trust as a model's SQL: written by the workspace, run read-only.
            return f"({sql.strip().rstrip(';')})"
        if kind not in ("column", "property"):
            raise SegmentError(f"{path}.attribute_type must be one of: column, property, sql")
        column = self._column(atom.get("attribute"), f"{path}.attribute")
        op = atom.get("operator")
        if not isinstance(op, str) or op.lower() not in OPERATORS:
            raise SegmentError(f"{path}.operator {op!r} is not one of: {', '.join(OPERATORS)}")
        return self._condition(column, op.lower(), atom.get("value"), f"{path}.value")

    def _column(self, name: Any, path: str) -> str:
        if not isinstance(name, str) or not name:
            raise SegmentError(f"{path} must be a column name")
        if name not in self.columns:
            raise SegmentError(f"{path}: the segment's dataset has no column {name!r}")
        return self.dialect.quote_identifier(name)

    def _condition(self, col: str, op: str, value: Any, path: str) -> str:
        if op in _NO_VALUE:
            return _NO_VALUE[op].format(c=col)
        if op in _COMPARE:
            return f"{col} {_COMPARE[op]} {self._lit(_scalar(value, path), path)}"
        if op in _LIKE:
            before, after, negate = _LIKE[op]
            text = _scalar(value, path)
            pattern = before + _like_escape(str(text)) + after
            like = "NOT LIKE" if negate else "LIKE"
            return f"{col} {like} {self._lit(pattern, path)} ESCAPE '{_ESCAPE}'"
        if op in _LIST:
            items = _scalars(value, path)
            listed = ", ".join(self._lit(v, f"{path}[{i}]") for i, v in enumerate(items))
            return f"{col} {'NOT IN' if op == 'notin' else 'IN'} ({listed})"
        if op in _DAYS:
            return self._days(col, op, value, path)
        if op == "on":
            day = _date(value, path)
            return self._range(col, day, day + dt.timedelta(days=1), path)
        return self._between(col, value, path)

    def _days(self, col: str, op: str, value: Any, path: str) -> str:
        days = _days(value, path)
        cutoff = self.now - dt.timedelta(days=days)
        if op == "morethandays":
            return f"{col} < {self._lit(cutoff, path)}"
        if op == "lessthandays":
            return f"{col} > {self._lit(cutoff, path)}"
        start = dt.datetime.combine(cutoff.date(), dt.time(), tzinfo=dt.UTC)
        return self._range(col, start, start + dt.timedelta(days=1), path)

    def _between(self, col: str, value: Any, path: str) -> str:
        if not isinstance(value, dict) or not {"bound_one", "bound_two"} <= value.keys():
            raise SegmentError(f"{path} must be an object with bound_one and bound_two")
        one = self._bound(value["bound_one"], f"{path}.bound_one")
        two = self._bound(value["bound_two"], f"{path}.bound_two")
        low, high = sorted((one, two))
        return f"({col} >= {self._lit(low, path)} AND {col} <= {self._lit(high, path)})"

    def _bound(self, raw: Any, path: str) -> dt.datetime:
        if raw is None or raw == "":
            return self.now
        if isinstance(raw, str) and (m := _DAYS_AGO.match(raw)):
            return self.now - dt.timedelta(days=int(m.group(1)))
        if isinstance(raw, str):
            try:
                parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        raise SegmentError(f'{path} must be a datetime, blank (now) or "days_ago: N"')

    def _range(self, col: str, start: Any, end: Any, path: str) -> str:
        return f"({col} >= {self._lit(start, path)} AND {col} < {self._lit(end, path)})"

    def _lit(self, value: Any, path: str) -> str:
        try:
            return self.dialect.sql_literal(value)
        except UnsafeLiteral as exc:
            raise SegmentError(f"{path}: {exc}") from None


def _scalar(value: Any, path: str) -> Scalar:
    if not isinstance(value, str | int | float | bool):
        raise SegmentError(f"{path} must be a string, number or boolean")
    return value


def _scalars(value: Any, path: str) -> list[Scalar]:
    if not isinstance(value, list) or not value:
        raise SegmentError(f"{path} must be a non-empty array")
    return [_scalar(v, f"{path}[{i}]") for i, v in enumerate(value)]


def _days(value: Any, path: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SegmentError(f"{path} must be a whole number of days (0 or more)")
    return value


def _date(value: Any, path: str) -> dt.date:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise SegmentError(f"{path} must be a date (YYYY-MM-DD)")


def _like_escape(text: str) -> str:
    return (
        text.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")
    )


def segment_query(base_sql: str, where: str) -> str:
    """The segment's rows: the base object's query filtered by ``where``."""
    return f"SELECT * FROM ({base_sql.strip().rstrip(';')}) AS _reflow_segment WHERE {where}"
