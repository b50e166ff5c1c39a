"""What the DB-API database connectors share around their SQL: the connection test
on one connection, and rows fetched as tuples turned into Arrow batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from reflow.connectors.base import TestStep, run_steps

#: A value converter for one column (None: the driver's value is already right).
Converter = Callable[[Any], Any] | None


def check_on_one_connection(
    connect: Callable[[], Any],
    steps: Sequence[tuple[str, Callable[[Any], object]]],
    *,
    probe: Callable[[Any], object] | None = None,
) -> list[TestStep]:
    """ "Verify connectivity" opens a connection (and runs ``probe`` on it, for drivers
    that connect lazily), then each named step runs on that connection; it is closed
    whatever happens, and the first step that fails ends the test."""
    conn: Any = None

    def connectivity() -> None:
        nonlocal conn
        conn = connect()
        if probe is not None:
            probe(conn)

    def on_conn(step: Callable[[Any], object]) -> Callable[[], object]:
        return lambda: step(conn)

    try:
        return run_steps(
            [("Verify connectivity", connectivity)]
            + [(name, on_conn(step)) for name, step in steps]
        )
    finally:
        if conn is not None:
            conn.close()


def rows_to_batch(
    rows: Sequence[tuple[Any, ...]], schema: pa.Schema, converters: Sequence[Converter]
) -> pa.RecordBatch:
    """Row tuples as one batch of ``schema``, each column's values converted first."""
    arrays = []
    for i, (field, convert) in enumerate(zip(schema, converters, strict=True)):
        values = [row[i] for row in rows]
        if convert is not None:
            values = [convert(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
