"""Applying a sync's mappings to a source batch, column-wise in Arrow."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import pyarrow as pa

from reflow.connectors.errors import TerminalError

_BASIC_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


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
        raise TerminalError(f"constant basic_type {basic_type!r} is not one of {list(_BASIC_TYPES)}")
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
