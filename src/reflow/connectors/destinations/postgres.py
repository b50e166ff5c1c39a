"""PostgreSQL destination.

Each batch is loaded by ``COPY`` into a temporary staging table, then merged into
the target with one statement per action (``INSERT ... ON CONFLICT``, ``UPDATE ...
FROM``, ``DELETE ... USING``), in one transaction per batch.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from reflow.connectors._postgres import (
    PostgresConfig,
    connect,
    quote_ident,
    quote_qualified,
    split_qualified,
)
from reflow.connectors._tables import POSTGRES_TYPES, create_table_sql, table_type
from reflow.connectors.base import (
    Action,
    BatchWriter,
    DestinationCapabilities,
    DestinationConnector,
    DestinationField,
    DestinationObject,
    RejectedRecord,
    TestStep,
    WriteContext,
    WriteResult,
    run_steps,
)
from reflow.connectors.errors import BatchRejected, ObjectNotFound, TerminalError, TransientError

_OPERATIONS = ("upsert", "update", "insert", "mirror", "append", "delete")

_OBJECTS_SQL = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable,
       c.column_default IS NOT NULL OR c.is_identity = 'YES',
       EXISTS (
         SELECT 1 FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass
           AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
           AND a.attname = c.column_name)
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE t.table_type = 'BASE TABLE'
  AND c.table_schema NOT IN ('pg_catalog', 'information_schema', 'reflow_bookkeeping')
  AND has_table_privilege(format('%%I.%%I', c.table_schema, c.table_name), 'INSERT')
  {filter}
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""


class PostgresDestination(DestinationConnector):
    service_name = "postgres"
    label = "Postgres"
    documentation_slug = "postgres"
    config_model = PostgresConfig
    capabilities = DestinationCapabilities(operations=_OPERATIONS, batch_size=100_000)
    config: PostgresConfig

    def test_connection(self) -> list[TestStep]:
        state: dict[str, Any] = {}

        def connectivity() -> None:
            state["conn"] = connect(self.config, autocommit=True)

        def write_access() -> None:
            conn = state["conn"]
            conn.execute("CREATE TEMP TABLE _reflow_probe (x int)")
            conn.execute("DROP TABLE _reflow_probe")

        try:
            return run_steps(
                [("Verify connectivity", connectivity), ("Verify write access", write_access)]
            )
        finally:
            if "conn" in state:
                state["conn"].close()

    def list_objects(self) -> list[DestinationObject]:
        return self._objects(None)

    def get_object(self, full_name: str) -> DestinationObject:
        found = self._objects(split_qualified(full_name))
        if not found:
            raise ObjectNotFound(f"table {full_name!r} not found or not writable")
        return found[0]

    def _objects(self, only: tuple[str, str] | None) -> list[DestinationObject]:
        sql = _OBJECTS_SQL.format(
            filter="AND c.table_schema = %s AND c.table_name = %s" if only else ""
        )
        with connect(self.config, autocommit=True) as conn:
            rows = conn.execute(sql, only or ()).fetchall()
        tables: dict[str, list[DestinationField]] = {}
        for schema, table, column, dtype, nullable, has_default, unique in rows:
            tables.setdefault(f"{schema}.{table}", []).append(
                DestinationField(
                    full_name=column,
                    label=column,
                    type=dtype,
                    required=nullable == "NO" and not has_default,
                    identifier=bool(unique),
                )
            )
        return [
            DestinationObject(name, name, _OPERATIONS, tuple(fields))
            for name, fields in tables.items()
        ]

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return PostgresWriter(self.config, ctx)

    object_types = (table_type(schema_hint="public"),)

    def create_object(
        self, object_type: str, attributes: Mapping[str, Any], fields: list[Mapping[str, Any]]
    ) -> DestinationObject:
        import psycopg

        schema = str(attributes.get("schema") or "public")
        table = str(attributes["table_name"])
        sql = create_table_sql(quote_qualified(schema, table), fields, POSTGRES_TYPES, quote_ident)
        try:
            with connect(self.config, autocommit=True) as conn:
                conn.execute(sql)
        except psycopg.Error as exc:
            raise TerminalError(str(exc).strip()) from exc
        return self.get_object(f"{schema}.{table}")


class PostgresWriter(BatchWriter):
    def __init__(self, config: PostgresConfig, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.conn = connect(config)
        schema, table = split_qualified(ctx.object_name)
        self.target = quote_qualified(schema, table)
        self.stage = quote_ident(f"_reflow_stage_{ctx.run_id}")
        self._staged_columns: tuple[str, ...] | None = None

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        import psycopg

        columns = tuple(batch.schema.names)
        try:
            with self.conn.transaction():
                self._stage(columns)
                with self.conn.cursor().copy(
                    f"COPY {self.stage} ({_cols(columns)}) FROM STDIN (FORMAT csv)"
                ) as copy:
                    copy.write(_to_csv(batch))
                self.conn.execute(self._merge_sql(columns, action))
                missing = self._missing_keys() if action == "update" else []
                self.conn.execute(f"TRUNCATE {self.stage}")
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            self._staged_columns = None  # the rolled-back transaction took the stage table
            raise BatchRejected(str(exc).strip()) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise TerminalError(str(exc).strip()) from exc
        except psycopg.errors.UndefinedColumn as exc:
            raise TerminalError(str(exc).strip()) from exc
        except psycopg.OperationalError as exc:
            self._staged_columns = None
            raise TransientError(str(exc).strip()) from exc
        return WriteResult(rejected=self._not_found(batch, missing))

    def _missing_keys(self) -> list[str]:
        """Update only: staged keys with no record in the target (nothing was updated)."""
        key = quote_ident(self.ctx.key_field)
        rows = self.conn.execute(
            f"SELECT s.{key}::text FROM {self.stage} s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {self.target} t WHERE t.{key} = s.{key})"
        ).fetchall()
        return [r[0] for r in rows]

    def _not_found(self, batch: pa.RecordBatch, missing: list[str]) -> list[RejectedRecord]:
        if not missing:
            return []
        import pyarrow.compute as pc

        keys = batch.column(self.ctx.key_field).cast(pa.string())
        hits = pc.indices_nonzero(pc.is_in(keys, value_set=pa.array(missing, pa.string())))
        return [
            RejectedRecord(i, f"no record with {self.ctx.key_field} = {keys[i].as_py()} exists"
                           " in the destination (update only)")
            for i in hits.to_pylist()
        ]

    def _stage(self, columns: tuple[str, ...]) -> None:
        if self._staged_columns == columns:
            return
        self.conn.execute(f"DROP TABLE IF EXISTS {self.stage}")
        self.conn.execute(
            f"CREATE TEMP TABLE {self.stage} AS SELECT {_cols(columns)} FROM {self.target}"
            " WITH NO DATA"
        )
        self._staged_columns = columns

    def _merge_sql(self, columns: tuple[str, ...], action: Action) -> str:
        key = quote_ident(self.ctx.key_field)
        cols = _cols(columns)
        others = [c for c in columns if c != self.ctx.key_field]
        sets = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in others)
        if action == "upsert":
            conflict = f"DO UPDATE SET {sets}" if others else "DO NOTHING"
            return (
                f"INSERT INTO {self.target} ({cols}) SELECT {cols} FROM {self.stage}"
                f" ON CONFLICT ({key}) {conflict}"
            )
        if action == "insert":
            return (
                f"INSERT INTO {self.target} ({cols}) SELECT {cols} FROM {self.stage}"
                f" ON CONFLICT ({key}) DO NOTHING"
            )
        if action == "append":
            return f"INSERT INTO {self.target} ({cols}) SELECT {cols} FROM {self.stage}"
        if action == "update":
            assign = ", ".join(f"{quote_ident(c)} = s.{quote_ident(c)}" for c in others)
            return f"UPDATE {self.target} t SET {assign} FROM {self.stage} s WHERE t.{key} = s.{key}"
        if action == "delete":
            return f"DELETE FROM {self.target} t USING {self.stage} s WHERE t.{key} = s.{key}"
        raise TerminalError(f"unsupported action {action!r}")

    def close(self) -> None:
        self.conn.close()


def _cols(columns: tuple[str, ...]) -> str:
    return ", ".join(quote_ident(c) for c in columns)


def _to_csv(batch: pa.RecordBatch) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(_utc_naive(batch), out, write_options=pacsv.WriteOptions(include_header=False))
    return out.getvalue()


def _utc_naive(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Zoned timestamps as their UTC wall time: Arrow's CSV writer formats zoned values
    through a time-zone lookup per value (~12x slower than naive ones, most of the CSV
    rendering time), and ``connect`` sets the session to ``TimeZone=UTC``, so Postgres
    reads the naive text as the same instant."""
    zoned = [i for i, f in enumerate(batch.schema) if pa.types.is_timestamp(f.type) and f.type.tz]
    for i in zoned:
        f = batch.schema.field(i)
        naive = batch.column(i).cast(pa.timestamp(f.type.unit))
        batch = batch.set_column(i, f.with_type(naive.type), naive)
    return batch
