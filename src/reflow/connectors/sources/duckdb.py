"""DuckDB source: a database file on the Reflow host, opened read-only.

A Reflow extension (Census's DuckDB-family source is MotherDuck). DuckDB produces
Arrow natively, so rows stream as the engine's own record batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from reflow.connectors._dbapi import check_on_one_connection
from reflow.connectors._sql import quote_double as quote_ident
from reflow.connectors._sql import strip_statement as _strip
from reflow.connectors._sql import unique_columns_sql
from reflow.connectors.base import (
    Column,
    ConnectorConfig,
    SourceCapabilities,
    SourceConnector,
    TableRef,
    TestStep,
)
from reflow.connectors.errors import InvalidQuery, ObjectNotFound, TerminalError, TransientError

_SYSTEM_CATALOGS = ("system", "temp")
_SYSTEM_SCHEMAS = ("information_schema", "pg_catalog")

_UNIQUE_COLUMNS = unique_columns_sql(
    "tc.table_catalog = ? AND tc.table_schema = ? AND tc.table_name = ?"
)


class DuckdbConfig(ConnectorConfig):
    path: str = Field(
        title="Path",
        description="Path of the DuckDB database file on the Reflow host; opened read-only.",
    )


class DuckdbSource(SourceConnector):
    service_name = "duckdb"
    label = "DuckDB"
    documentation_slug = "duckdb"
    config_model = DuckdbConfig
    capabilities = SourceCapabilities()
    config: DuckdbConfig

    def _connect(self) -> Any:
        import duckdb

        path = str(Path(self.config.path).expanduser())
        try:
            return duckdb.connect(path, read_only=True)
        except duckdb.Error as exc:
            message = str(exc).strip()
            # Another process holding the write lock is temporary; a bad path is not.
            if "lock" in message.lower():
                raise TransientError(message) from exc
            raise TerminalError(message) from exc

    def test_connection(self) -> list[TestStep]:
        def read_access(conn: Any) -> None:
            conn.execute("SELECT table_name FROM information_schema.tables LIMIT 1")

        return check_on_one_connection(self._connect, [("Verify read access", read_access)])

    def list_tables(self) -> list[TableRef]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT table_catalog, table_schema, table_name FROM information_schema.tables"
                " WHERE table_catalog <> ALL(?) AND table_schema <> ALL(?)"
                " ORDER BY table_catalog, table_schema, table_name",
                [list(_SYSTEM_CATALOGS), list(_SYSTEM_SCHEMAS)],
            ).fetchall()
        return [TableRef(*row) for row in rows]

    def list_columns(self, table: TableRef) -> list[Column]:
        key = [table.catalog, table.schema, table.name]
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_catalog = ? AND table_schema = ? AND table_name = ?"
                " ORDER BY ordinal_position",
                key,
            ).fetchall()
            unique = {name for (name,) in conn.execute(_UNIQUE_COLUMNS, key).fetchall()}
        if not rows:
            raise ObjectNotFound(f"table {table.catalog}.{table.schema}.{table.name} not found")
        return [Column(name, dtype, name in unique) for name, dtype in rows]

    def query_columns(self, sql: str) -> list[Column]:
        import duckdb

        with self._connect() as conn:
            try:
                # A relation is bound, not run: this reads no rows.
                rel = conn.sql(f"SELECT * FROM ({_strip(sql)}) AS _reflow_q")
                return [Column(n, str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
            except duckdb.Error as exc:
                raise InvalidQuery(str(exc).strip()) from exc

    def table_query(self, table: TableRef) -> str:
        parts = (table.catalog, table.schema, table.name)
        return "SELECT * FROM " + ".".join(quote_ident(p) for p in parts)

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        import duckdb

        batch_size = batch_size or self.capabilities.batch_size
        with self._connect() as conn:
            try:
                rel = conn.sql(f"SELECT * FROM ({_strip(sql)}) AS _reflow_q")
                # duckdb 2 renamed fetch_arrow_reader; accept both releases the lock allows.
                reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
                for batch in reader(batch_size):
                    # The reader's batch size is a hint (vector-aligned), so enforce it.
                    for offset in range(0, batch.num_rows, batch_size):
                        yield batch.slice(offset, batch_size)
            except duckdb.Error as exc:
                raise InvalidQuery(str(exc).strip()) from exc
