"""DuckDB destination (a Reflow extension: Census has no DuckDB destination type).

Objects are the base tables of the file's own catalog, named ``schema.table``; a
bare ``table`` means ``main.table``. DuckDB has no grants: every table is writable
when the file is.

Each batch is registered with DuckDB as an Arrow view (no copy, no staging table
to fill) and merged with one statement per action: ``MERGE INTO`` for upsert,
insert, update and delete (so the key needs no unique index), plain ``INSERT ...
SELECT`` for append. One statement is one transaction, so a rejected batch leaves
the table as it was.

A writer keeps its connection for the whole run; DuckDB lets one process at a time
open a file for writing, so a second process gets a ``TransientError`` meanwhile.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import Field

from reflow.connectors._dbapi import check_on_one_connection
from reflow.connectors._sql import (
    TABLE_OPERATIONS,
    CatalogColumn,
    Merge,
    MergeDialect,
    catalog_objects,
)
from reflow.connectors._sql import quote_double as quote_ident
from reflow.connectors.base import (
    Action,
    BatchWriter,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationConnector,
    DestinationObject,
    TestStep,
    WriteContext,
    WriteResult,
)
from reflow.connectors.errors import BatchRejected, ObjectNotFound, TerminalError, TransientError

_OBJECTS_SQL = """
SELECT c.schema_name, c.table_name, c.column_name, c.data_type, c.is_nullable,
       c.column_default IS NOT NULL,
       EXISTS (
         SELECT 1 FROM duckdb_constraints() k
         WHERE k.database_name = c.database_name AND k.schema_name = c.schema_name
           AND k.table_name = c.table_name
           AND k.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
           AND len(k.constraint_column_names) = 1
           AND k.constraint_column_names[1] = c.column_name)
FROM duckdb_columns() c
JOIN duckdb_tables() t
  ON t.database_name = c.database_name AND t.schema_name = c.schema_name
 AND t.table_name = c.table_name
WHERE c.database_name = current_database() AND NOT t.internal AND NOT t.temporary
  {filter}
ORDER BY c.schema_name, c.table_name, c.column_index
"""


class DuckDBConfig(ConnectorConfig):
    path: str = Field(
        title="Path",
        description="Path of the DuckDB database file on the Reflow host; created if absent.",
    )


class DuckDBDestination(DestinationConnector):
    service_name = "duckdb"
    label = "DuckDB"
    documentation_slug = "duckdb"
    config_model = DuckDBConfig
    capabilities = DestinationCapabilities(operations=TABLE_OPERATIONS, batch_size=100_000)
    config: DuckDBConfig

    def test_connection(self) -> list[TestStep]:
        def write_access(conn: Any) -> None:
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE main._reflow_probe (x INTEGER)")
            conn.execute("ROLLBACK")

        return check_on_one_connection(
            lambda: _connect(self.config),
            [("Verify write access", write_access)],
            probe=lambda conn: conn.execute("SELECT 1").fetchall(),
        )

    def list_objects(self) -> list[DestinationObject]:
        return self._objects(None)

    def get_object(self, full_name: str) -> DestinationObject:
        found = self._objects(split_qualified(full_name))
        if not found:
            raise ObjectNotFound(f"table {full_name!r} not found")
        return found[0]

    def _objects(self, only: tuple[str, str] | None) -> list[DestinationObject]:
        sql = _OBJECTS_SQL.format(
            filter="AND c.schema_name = ? AND c.table_name = ?" if only else ""
        )
        conn = _connect(self.config)
        try:
            rows = conn.execute(sql, list(only or ())).fetchall()
        finally:
            conn.close()
        return catalog_objects(
            CatalogColumn(
                schema, table, column, dtype, not nullable and not has_default, bool(unique)
            )
            for schema, table, column, dtype, nullable, has_default, unique in rows
        )

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return DuckDBWriter(self.config, ctx)


class DuckDBWriter(BatchWriter):
    def __init__(self, config: DuckDBConfig, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.conn = _connect(config)
        self.target = ".".join(quote_ident(p) for p in split_qualified(ctx.object_name))
        self.view = f"_reflow_batch_{ctx.run_id}"

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        import duckdb

        columns = tuple(batch.schema.names)
        self.conn.register(self.view, pa.Table.from_batches([batch]))
        try:
            self.conn.execute(self._merge_sql(columns, action))
        except (duckdb.DataError, duckdb.IntegrityError) as exc:
            raise BatchRejected(_message(exc)) from exc
        except (duckdb.IOException, duckdb.TransactionException) as exc:
            raise TransientError(_message(exc)) from exc
        except duckdb.Error as exc:
            raise TerminalError(_message(exc)) from exc
        finally:
            self.conn.unregister(self.view)
        return WriteResult()

    def _merge_sql(self, columns: tuple[str, ...], action: Action) -> str:
        merge = Merge.of(
            self.target, quote_ident(self.view), columns, self.ctx.key_field, quote_ident
        )
        return _MERGE.statement(merge, action)

    def close(self) -> None:
        self.conn.close()


class _DuckDBMerge(MergeDialect):
    # MERGE matches on the key alone, so the key needs no unique index.
    def upsert(self, m: Merge) -> str:
        return m.merge_into(when_matched=m.update_set() or "DO NOTHING", insert=True)

    def insert(self, m: Merge) -> str:
        return m.merge_into(when_matched=None, insert=True)

    def update(self, m: Merge) -> str:
        return m.merge_into(when_matched=m.update_set() or "DO NOTHING", insert=False)

    def delete(self, m: Merge) -> str:
        return m.merge_into(when_matched="DELETE", insert=False)


_MERGE = _DuckDBMerge()


def split_qualified(full_name: str) -> tuple[str, str]:
    """``schema.table`` -> (schema, table); a bare name is in ``main``."""
    schema, dot, table = full_name.partition(".")
    return (schema, table) if dot else ("main", schema)


def _connect(config: DuckDBConfig) -> Any:
    import duckdb

    try:
        return duckdb.connect(config.path)
    except duckdb.IOException as exc:
        # Another process holding the file's write lock lets go eventually; a
        # missing directory or a file that is not DuckDB's does not.
        if "lock" in str(exc).lower():
            raise TransientError(_message(exc)) from exc
        raise TerminalError(_message(exc)) from exc
    except duckdb.Error as exc:
        raise TerminalError(_message(exc)) from exc


def _message(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__
