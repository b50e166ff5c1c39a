"""PostgreSQL destination.

Each batch is loaded by binary ``COPY`` (ADBC) into a temporary staging table, then
merged into the target with one statement per action (``INSERT ... ON CONFLICT``,
``UPDATE ... FROM``, ``DELETE ... USING``), in one transaction per batch.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from reflow.connectors._postgres import (
    PostgresConfig,
    adbc_connect,
    connect,
    quote_ident,
    quote_qualified,
    split_qualified,
)
from reflow.connectors._sql import assigned
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
    capabilities = DestinationCapabilities(
        operations=_OPERATIONS, batch_size=100_000, field_preferences=True
    )
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


#: Batches a PostgreSQL writer has in flight at once, each on a connection of its own:
#: the server loads and merges them in parallel (a batch's COPY and merge each run in
#: one backend). Measured on a 1M-row engine-side first sync on two cores: delivery
#: 4.4-4.9 s -> 3.6-3.9 s (bench/README.md).
CONNECTIONS = 2


class PostgresWriter(BatchWriter):
    """Loads each batch into a temporary stage table with ADBC (Arrow -> binary COPY,
    in C++: about three times cheaper than rendering CSV and parsing it on the server),
    then merges the stage into the target with one statement, in one transaction.

    The stage's columns have the batch's Arrow types; the merge casts a text column to
    its target column's type where no assignment cast would (JSON, UUID, enums,
    arrays, numbers given as text), so a value the target cannot hold fails the batch
    (and is isolated by splitting) exactly as a typed COPY would fail it.

    Pipelined: up to ``CONNECTIONS`` batches are written at once, each in its own
    transaction on its own connection (the engine settles them in order and
    acknowledges a batch only once its transaction committed). A run's batches never
    share a key, so they never wait on each other's rows."""

    def __init__(self, config: PostgresConfig, ctx: WriteContext) -> None:
        self.ctx = ctx
        self._config = config
        # The first connection now: a destination that refuses it fails the run at once.
        self._connections = [_Connection(config, ctx)]
        self._idle: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._idle.put(self._connections[0])
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.pipeline_depth = CONNECTIONS - 1

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        connection = self._take()
        try:
            return connection.write(batch, action)
        finally:
            self._idle.put(connection)

    def submit(self, batch: pa.RecordBatch, action: Action) -> Future[WriteResult]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=CONNECTIONS,
                                            thread_name_prefix="reflow-postgres")
        return self._pool.submit(self.write, batch, action)

    def _take(self) -> _Connection:
        """An idle connection, or a new one while fewer than ``CONNECTIONS`` are open."""
        with self._lock:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                if len(self._connections) < CONNECTIONS:
                    import adbc_driver_manager as adbc

                    try:
                        connection = _Connection(self._config, self.ctx)
                    except adbc.Error as exc:  # this batch's failure (a lost server: retried)
                        raise _classify(exc) from exc
                    self._connections.append(connection)
                    return connection
        return self._idle.get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for connection in self._connections:
            connection.close()


class _Connection:
    """One connection of a ``PostgresWriter``, with its own temporary stage table."""

    def __init__(self, config: PostgresConfig, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.conn = adbc_connect(config)
        schema, table = split_qualified(ctx.object_name)
        self.target = quote_qualified(schema, table)
        self.stage_name = f"_reflow_stage_{ctx.run_id}"
        self.stage = quote_ident(self.stage_name)
        self._staged: pa.Schema | None = None
        self._types: dict[str, str] | None = None

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        import adbc_driver_manager as adbc

        batch = _ingestible(batch)
        try:
            with self.conn.cursor() as cur:
                self._load(cur, batch)
                cur.execute(self._merge_sql(tuple(batch.schema.names), action))
                missing = self._missing_keys(cur) if action == "update" else []
                cur.execute(f"TRUNCATE {self.stage}")
            self.conn.commit()
        except adbc.Error as exc:
            self._rollback()
            raise _classify(exc) from exc
        return WriteResult(rejected=self._not_found(batch, missing))

    def _load(self, cur: Any, batch: pa.RecordBatch) -> None:
        if self._types is None:
            self._types = self._target_types(cur)
        if self._staged is not None and self._staged.equals(batch.schema):
            cur.adbc_ingest(self.stage_name, batch, mode="append", temporary=True)
            return
        cur.execute(f"DROP TABLE IF EXISTS {self.stage}")
        cur.adbc_ingest(self.stage_name, batch, mode="create", temporary=True)
        self._staged = batch.schema

    def _rollback(self) -> None:
        import adbc_driver_manager as adbc

        self._staged = None  # the rolled-back transaction may have taken the stage table
        with contextlib.suppress(adbc.Error):
            self.conn.rollback()

    def _target_types(self, cur: Any) -> dict[str, str]:
        literal = "'" + self.target.replace("'", "''") + "'"
        cur.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            f" WHERE attrelid = {literal}::regclass AND attnum > 0 AND NOT attisdropped"
        )
        return dict(cur.fetchall())

    def _value(self, column: str, arrow: pa.DataType, alias: str = "s") -> str:
        """The stage column as its target column's type (see the class docstring)."""
        target = (self._types or {}).get(column)
        ref = f"{alias}.{quote_ident(column)}"
        if target is None or not pa.types.is_string(arrow) or _is_string_type(target):
            return ref
        return f"CAST({ref} AS {target})"

    def _assigned(self, column: str, new: str) -> str:
        """What an update writes into ``column`` of the existing record ``t``."""
        return assigned(self.ctx, column, new, f"t.{quote_ident(column)}")

    def _missing_keys(self, cur: Any) -> list[str]:
        """Update only: staged keys with no record in the target (nothing was updated)."""
        key = quote_ident(self.ctx.key_field)
        staged = self._value(self.ctx.key_field, self._staged.field(self.ctx.key_field).type)  # type: ignore[union-attr]
        cur.execute(
            f"SELECT s.{key}::text FROM {self.stage} s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {self.target} t WHERE t.{key} = {staged})"
        )
        return [r[0] for r in cur.fetchall()]

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

    def _merge_sql(self, columns: tuple[str, ...], action: Action) -> str:
        assert self._staged is not None
        types = {f.name: f.type for f in self._staged}
        key = quote_ident(self.ctx.key_field)
        staged_key = self._value(self.ctx.key_field, types[self.ctx.key_field])
        cols = _cols(columns)
        values = ", ".join(self._value(c, types[c]) for c in columns)
        others = [c for c in columns if c != self.ctx.key_field]
        sets = ", ".join(
            f"{quote_ident(c)} = {self._assigned(c, f'EXCLUDED.{quote_ident(c)}')}"
            for c in others
        )
        insert = f"INSERT INTO {self.target} AS t ({cols}) SELECT {values} FROM {self.stage} s"
        if action == "upsert":
            conflict = f"DO UPDATE SET {sets}" if others else "DO NOTHING"
            return f"{insert} ON CONFLICT ({key}) {conflict}"
        if action == "insert":
            return f"{insert} ON CONFLICT ({key}) DO NOTHING"
        if action == "append":
            return insert
        if action == "update":
            assign = ", ".join(
                f"{quote_ident(c)} = {self._assigned(c, self._value(c, types[c]))}"
                for c in others
            )
            match = f"{self.stage} s WHERE t.{key} = {staged_key}"
            return f"UPDATE {self.target} t SET {assign} FROM {match}"
        if action == "delete":
            return f"DELETE FROM {self.target} t USING {self.stage} s WHERE t.{key} = {staged_key}"
        raise TerminalError(f"unsupported action {action!r}")

    def close(self) -> None:
        self.conn.close()


def _cols(columns: tuple[str, ...]) -> str:
    return ", ".join(quote_ident(c) for c in columns)


def _is_string_type(pg_type: str) -> bool:
    """Types text reaches by assignment, keeping its length checks (an explicit cast
    to ``varchar(n)`` would silently truncate)."""
    return pg_type == "text" or pg_type.startswith(("character", "citext", "name"))


def _ingestible(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Columns ADBC can stage: dictionaries decoded, all-null columns as text, no
    field metadata."""
    arrays, fields = [], []
    for f, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_dictionary(f.type):
            column = column.dictionary_decode()
        if pa.types.is_null(f.type):
            column = column.cast(pa.string())
        if pa.types.is_large_string(f.type):
            column = column.cast(pa.string())
        arrays.append(column)
        fields.append(pa.field(f.name, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _classify(exc: Exception) -> Exception:
    """A failed batch: rejected (bad data: split it), terminal or transient."""
    message = str(exc).strip()
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith(("22", "23")):
        return BatchRejected(message)
    if state.startswith("08") or state in ("57P01", "40001", "40P01"):
        return TransientError(message)
    if state.startswith("42") or state:
        return TerminalError(message)
    import adbc_driver_manager as adbc

    if isinstance(exc, adbc.OperationalError):
        return TransientError(message)
    return TerminalError(message)
