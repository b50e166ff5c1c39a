"""Applying a sync's mappings to a source batch, column-wise in Arrow, and coercing
the mapped values to the destination fields' types."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from reflow.connectors.base import DestinationField
from reflow.connectors.errors import TerminalError

_BASIC_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
}

NORMALIZATIONS = (
    "start_case", "lower_case", "upper_case", "camel_case", "snake_case", "match_source_names",
)


def map_batch(
    batch: pa.RecordBatch, mappings: list[dict[str, Any]], meta: dict[str, Any]
) -> pa.Table:
    """Destination-named columns for one source batch. ``meta`` holds the
    ``sync_metadata`` values of this run."""
    n = batch.num_rows
    names, arrays = [], []
    rows: list[dict[str, Any]] | None = None
    for mapping in mappings:
        kind, data = mapping["from"]["type"], mapping["from"]["data"]
        if kind == "column":
            arrays.append(_column(batch, data))
        elif kind == "constant_value":
            arrays.append(_constant(data.get("value"), data.get("basic_type", "text"), n))
        elif kind == "sync_metadata":
            arrays.append(pa.array([meta[data]] * n))
        elif kind == "liquid_template":
            rows = rows if rows is not None else batch.to_pylist()
            arrays.append(_liquid(data["liquid_template"], rows))
        else:
            raise TerminalError(f"mapping type {kind!r} is not supported yet")
        names.append(mapping["to"])
    return pa.Table.from_arrays(arrays, names=names)


def source_column(batch: pa.RecordBatch, name: str) -> pa.Array:
    return _column(batch, name)


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    index = batch.schema.get_field_index(name)
    if index < 0:
        # Warehouses differ in case folding (Snowflake upper-cases): match case-insensitively.
        folded = [i for i, n in enumerate(batch.schema.names) if n.lower() == name.lower()]
        if len(folded) != 1:
            raise TerminalError(f"mapped column {name!r} is not in the source object")
        index = folded[0]
    return batch.column(index)


def _constant(value: Any, basic_type: str, n: int) -> pa.Array:
    arrow_type = _BASIC_TYPES.get(basic_type)
    if arrow_type is None:
        raise TerminalError(
            f"constant basic_type {basic_type!r} is not one of {list(_BASIC_TYPES)}"
        )
    if basic_type == "datetime" and isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return pa.array([value] * n, type=arrow_type)


@cache
def _template(source: str) -> Any:
    from liquid import parse

    return parse(source)


def _liquid(source: str, rows: list[dict[str, Any]]) -> pa.Array:
    template = _template(source)
    return pa.array([template.render(record=row) for row in rows], type=pa.string())


# -- sync_all_properties -------------------------------------------------------------------


def normalize_name(name: str, style: str | None) -> str:
    """A source column's name as ``field_normalization`` spells it."""
    if style in (None, "match_source_names"):
        return name
    if style == "lower_case":
        return name.lower()
    if style == "upper_case":
        return name.upper()
    words = _words(name)
    if style == "snake_case":
        return "_".join(w.lower() for w in words)
    if style == "camel_case":
        return words[0].lower() + "".join(w.capitalize() for w in words[1:]) if words else name
    if style == "start_case":
        return " ".join(w.capitalize() for w in words)
    raise ValueError(f"unknown field_normalization {style!r}")


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def auto_mappings(
    mappings: list[dict[str, Any]],
    source_columns: Iterable[str],
    field_names: Iterable[str] | None,
    normalization: str | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """``field_behavior: sync_all_properties``: every source column not mapped yet is
    mapped to the same-named (normalised) destination field. ``field_names`` is None
    when the destination accepts any field (it creates them on write). Returns the
    added mappings and the columns left out because the destination has no such field
    (Reflow does not alter a database table's columns)."""
    mapped_columns = {
        m["from"]["data"].lower() for m in mappings if m["from"]["type"] == "column"
    }
    targets = {m["to"] for m in mappings}
    by_folded: dict[str, list[str]] = {}
    for name in field_names or ():
        by_folded.setdefault(name.lower(), []).append(name)
    exact = set(field_names or ())
    added, skipped = [], []
    for column in source_columns:
        if column.lower() in mapped_columns:
            continue
        wanted = normalize_name(column, normalization)
        if field_names is None:
            target: str | None = wanted
        elif wanted in exact:
            target = wanted
        else:
            folded = by_folded.get(wanted.lower(), [])
            target = folded[0] if len(folded) == 1 else None
        if target is None:
            skipped.append(column)
            continue
        if target in targets:
            continue
        targets.add(target)
        added.append({"from": {"type": "column", "data": column}, "to": target,
                      "is_primary_identifier": False})
    return added, skipped


# -- coercion to destination types ---------------------------------------------------------


def arrow_type_for(dest_type: str) -> pa.DataType | None:
    """The Arrow type values for a destination field of type ``dest_type`` are cast to;
    None when Reflow leaves the value as it is (JSON, arrays, types it does not know)."""
    t = dest_type.lower().strip()
    if "[]" in t or t.startswith(("array", "json", "object", "struct", "variant")):
        return None
    if "bool" in t:
        return pa.bool_()
    if "timestamp" in t or "datetime" in t:
        naive = "without" in t or t.startswith(("datetime", "timestamp_ntz"))
        return pa.timestamp("us") if naive else pa.timestamp("us", tz="UTC")
    if t == "date":
        return pa.date32()
    if "int" in t and "interval" not in t and "point" not in t:
        return pa.int64()
    if any(w in t for w in ("double", "float", "real", "numeric", "decimal", "number")):
        return pa.float64()
    if any(w in t for w in ("char", "text", "string")):
        return pa.string()
    return None


@dataclass
class Coerced:
    valid: pa.Table
    #: The rows that could not be coerced, as mapped, with one reason each.
    invalid: pa.Table
    reasons: list[str]


def field_types(fields: Iterable[DestinationField]) -> dict[str, tuple[str, pa.DataType]]:
    out = {}
    for f in fields:
        arrow = arrow_type_for(f.type)
        if arrow is not None:
            out[f.full_name] = (f.type, arrow)
    return out


def coerce(table: pa.Table, types: dict[str, tuple[str, pa.DataType]]) -> Coerced:
    """Cast each column to its destination field's type. Column-wise in Arrow; only a
    column that fails as a whole is cast value by value, to find the bad rows."""
    bad: dict[int, str] = {}
    cast: dict[str, pa.Array] = {}
    for name in table.column_names:
        if name not in types:
            continue
        dest_type, target = types[name]
        column = table.column(name).combine_chunks()
        if _keeps_exact(dest_type, column.type):
            if pa.types.is_string(column.type):  # validated as a number, sent as written
                try:
                    _cast(column, target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    _elementwise(column, name, dest_type, target, bad)
            cast[name] = column
            continue
        try:
            cast[name] = _cast(column, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            cast[name] = _elementwise(column, name, dest_type, target, bad)
    arrays = [cast.get(n, table.column(n)) for n in table.column_names]
    converted = pa.Table.from_arrays(arrays, names=table.column_names)
    if not bad:
        return Coerced(converted, table.slice(0, 0), [])
    keep = pa.array([i not in bad for i in range(table.num_rows)])
    return Coerced(converted.filter(keep), table.filter(pc.invert(keep)),
                   [bad[i] for i in sorted(bad)])


def _keeps_exact(dest_type: str, source: pa.DataType) -> bool:
    """An exact-numeric field (``numeric``, ``decimal``, ``NUMBER``) takes integers,
    decimals and numeric text as they are: through float64 they would lose digits
    beyond the 15th (a ``NUMBER(38,0)`` id above 2**53, a ``numeric(30,10)`` amount).
    The destination parses them into its own exact type."""
    t = dest_type.lower()
    exact = any(w in t for w in ("numeric", "decimal", "number"))
    return exact and (
        pa.types.is_integer(source) or pa.types.is_decimal(source) or pa.types.is_string(source)
    )


def _elementwise(
    column: pa.Array, name: str, dest_type: str, target: pa.DataType, bad: dict[int, str]
) -> pa.Array:
    """The column cast value by value; a value that fails marks its row bad (null here)."""
    pieces = []
    for i in range(len(column)):
        try:
            pieces.append(_cast(column.slice(i, 1), target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            value = column[i].as_py()
            bad.setdefault(i, _reason(name, value, dest_type, target))
            pieces.append(pa.nulls(1, target))
    return pa.concat_arrays(pieces) if pieces else pa.array([], target)


def _reason(name: str, value: Any, dest_type: str, target: pa.DataType) -> str:
    if pa.types.is_integer(target) and _fractional(value):
        return f"{name}: value {value!r} is not a whole number, so it cannot be {dest_type}"
    return f"{name}: value {value!r} cannot be converted to {dest_type}"


def _fractional(value: Any) -> bool:
    try:
        number = decimal.Decimal(str(value))
    except (decimal.InvalidOperation, ValueError):
        return False
    return number.is_finite() and number != number.to_integral_value()


#: Numeric text read as an exact decimal first, so that "6.00" becomes 6 and "6.5" fails.
_EXACT_TEXT = pa.decimal128(38, 10)


def _cast(column: pa.Array, target: pa.DataType) -> pa.Array:
    if column.type == target:
        return column
    try:
        return pc.cast(column, target, safe=True)
    except pa.ArrowInvalid:
        # "2024-01-01 10:00" has no zone: read it as UTC, as the warehouse would.
        if pa.types.is_timestamp(target) and target.tz and pa.types.is_string(column.type):
            return pc.cast(pc.cast(column, pa.timestamp("us"), safe=True), target)
        # Whole numeric text ("6.00", how numeric values without a declared scale can
        # arrive) goes into an integer field as PostgreSQL casts numeric to integer; a
        # fraction still fails (the safe cast refuses to drop digits).
        if pa.types.is_integer(target) and pa.types.is_string(column.type):
            return pc.cast(pc.cast(column, _EXACT_TEXT, safe=True), target, safe=True)
        raise
