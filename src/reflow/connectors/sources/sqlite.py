"""SQLite source: a database file on the Reflow host, opened read-only.

A Reflow extension (Census has no SQLite source). SQLite types values per row, not
per column, so a query's Arrow schema is decided by one ``typeof()`` scan before the
rows are streamed: every batch then carries the same schema, and memory stays bounded
by the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
from pydantic import Field

from reflow.connectors._dbapi import check_on_one_connection, rows_to_batch
from reflow.connectors._sql import quote_double as quote_ident
from reflow.connectors._sql import strip_statement as _strip
from reflow.connectors.base import (
    Column,
    ConnectorConfig,
    SourceCapabilities,
    SourceConnector,
    TableRef,
    TestStep,
)
from reflow.connectors.errors import InvalidQuery, ObjectNotFound, TerminalError

CATALOG = "main"

# typeof() results in the order a mixed column is widened: any text wins.
_ARROW_BY_STORAGE: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "real": pa.float64(),
    "blob": pa.binary(),
    "text": pa.string(),
}


class SqliteConfig(ConnectorConfig):
    path: str = Field(
        title="Path",
        description="Path of the SQLite database file on the Reflow host; opened read-only.",
    )


class SqliteSource(SourceConnector):
    service_name = "sqlite"
    label = "SQLite"
    documentation_slug = "sqlite"
    config_model = SqliteConfig
    capabilities = SourceCapabilities()
    config: SqliteConfig

    def _connect(self) -> Any:
        import sqlite3

        # mode=ro: the file is never created nor written, whatever the SQL says.
        uri = f"file:{quote(str(Path(self.config.path).expanduser()))}?mode=ro"
        try:
            return sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise TerminalError(f"{exc}: {self.config.path}") from exc

    def test_connection(self) -> list[TestStep]:
        def read_access(conn: Any) -> None:
            conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()

        return check_on_one_connection(
            self._connect,
            [("Verify read access", read_access)],
            # sqlite3 opens lazily: only a read proves the file is a database.
            probe=lambda conn: conn.execute("PRAGMA schema_version").fetchone(),
        )

    def list_tables(self) -> list[TableRef]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).fetchall()
        finally:
            conn.close()
        return [TableRef(CATALOG, CATALOG, name) for (name,) in rows]

    def list_columns(self, table: TableRef) -> list[Column]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT name, type, pk FROM pragma_table_info(?)", (table.name,)
            ).fetchall()
            unique = _unique_columns(conn, table.name)
        finally:
            conn.close()
        if not rows:
            raise ObjectNotFound(f"table {table.name} not found")
        pk_count = sum(1 for _, _, pk in rows if pk)
        # A composite primary key makes no single column unique.
        return [
            Column(name, dtype or "", (pk_count == 1 and bool(pk)) or name in unique)
            for name, dtype, pk in rows
        ]

    def query_columns(self, sql: str) -> list[Column]:
        conn = self._connect()
        try:
            cur = _execute(conn, f"SELECT * FROM ({_strip(sql)}) AS _reflow_q LIMIT 0")
            # SQLite has no column types for a query; report none rather than guess.
            return [Column(d[0], "") for d in cur.description or []]
        finally:
            conn.close()

    def table_query(self, table: TableRef) -> str:
        return f"SELECT * FROM {quote_ident(table.name)}"

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        batch_size = batch_size or self.capabilities.batch_size
        inner = f"SELECT * FROM ({_strip(sql)}) AS _reflow_q"
        conn = self._connect()
        try:
            schema = _scan_schema(conn, inner)
            cur = _execute(conn, inner)
            converters = [_as_text if f.type == pa.string() else None for f in schema]
            while rows := cur.fetchmany(batch_size):
                yield rows_to_batch(rows, schema, converters)
        finally:
            conn.close()


def _unique_columns(conn: Any, table: str) -> set[str]:
    out = set()
    for _, index, is_unique, *_ in conn.execute(
        "SELECT * FROM pragma_index_list(?)", (table,)
    ).fetchall():
        if not is_unique:
            continue
        cols = conn.execute("SELECT name FROM pragma_index_info(?)", (index,)).fetchall()
        if len(cols) == 1:
            out.add(cols[0][0])
    return out


def _scan_schema(conn: Any, inner: str) -> pa.Schema:
    """One pass over the query finding which storage classes each column holds."""
    names = [d[0] for d in _execute(conn, f"{inner} LIMIT 0").description or []]
    if not names:
        return pa.schema([])
    probes = ", ".join(
        f"max(typeof(_reflow_q.{quote_ident(n)}) = '{kind}')"
        for n in names
        for kind in _ARROW_BY_STORAGE
    )
    flags = _execute(conn, f"SELECT {probes} FROM ({inner}) AS _reflow_q").fetchone()
    kinds = list(_ARROW_BY_STORAGE)
    fields = []
    for i, name in enumerate(names):
        present = {k for j, k in enumerate(kinds) if flags[i * len(kinds) + j]}
        fields.append(pa.field(name, _arrow_type(present)))
    return pa.schema(fields)


def _arrow_type(present: set[str]) -> pa.DataType:
    if not present:
        return pa.string()  # only NULLs: any nullable type will do
    if present == {"integer"}:
        return pa.int64()
    if present <= {"integer", "real"}:
        return pa.float64()
    if present == {"blob"}:
        return pa.binary()
    return pa.string()


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _execute(conn: Any, sql: str) -> Any:
    import sqlite3

    try:
        return conn.execute(sql)
    except sqlite3.Error as exc:
        raise InvalidQuery(str(exc).strip()) from exc
