"""SQLite destination (a Reflow extension: Census has no SQLite type).

Objects are the tables of the file's ``main`` schema, named by their bare table
name; ``main.<table>`` is accepted as the same object. SQLite has no grants, so
every table is writable when the file is.

Each batch is bound with ``executemany`` from the Arrow columns into a temporary
staging table, then merged with one statement per action (``INSERT ... ON
CONFLICT``, ``UPDATE ... FROM``, ``DELETE ... WHERE key IN``), in one transaction
per batch, so a rejected batch leaves the table as it was.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
from pydantic import Field

from reflow.connectors._dbapi import check_on_one_connection
from reflow.connectors._sql import TABLE_OPERATIONS, Merge, MergeDialect, assigned, column_list
from reflow.connectors._sql import quote_double as quote_ident
from reflow.connectors._tables import SQLITE_TYPES, create_table_sql, table_type
from reflow.connectors.base import (
    Action,
    BatchWriter,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationConnector,
    DestinationField,
    DestinationObject,
    RejectedRecord,
    TestStep,
    WriteContext,
    WriteResult,
)
from reflow.connectors.errors import BatchRejected, ObjectNotFound, TerminalError, TransientError

# Result codes (primary, low byte) whose cause is the batch's data.
_DATA_CODES = {"SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_TOOBIG", "SQLITE_RANGE"}
# Another writer holds the file; retrying later helps.
_BUSY_CODES = {"SQLITE_BUSY", "SQLITE_LOCKED"}


class SQLiteConfig(ConnectorConfig):
    path: str = Field(
        title="Path",
        description="Path of the database file on the Reflow host; created if absent.",
    )
    busy_timeout_seconds: float = Field(
        30,
        title="Busy timeout (s)",
        description="How long a write waits for another writer's lock before failing.",
        ge=0,
    )


class SQLiteDestination(DestinationConnector):
    service_name = "sqlite"
    label = "SQLite"
    documentation_slug = "sqlite"
    config_model = SQLiteConfig
    capabilities = DestinationCapabilities(
        operations=TABLE_OPERATIONS, batch_size=50_000, field_preferences=True, lookups=True
    )
    config: SQLiteConfig

    def test_connection(self) -> list[TestStep]:
        def write_access(conn: sqlite3.Connection) -> None:
            # A temp table would live outside the file; the file itself must be writable.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE main._reflow_probe (x INTEGER)")
            conn.execute("ROLLBACK")

        return check_on_one_connection(
            lambda: _connect(self.config),
            [("Verify write access", write_access)],
            probe=lambda conn: conn.execute("SELECT count(*) FROM main.sqlite_schema").fetchone(),
        )

    def list_objects(self) -> list[DestinationObject]:
        with _closing(_connect(self.config)) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM main.sqlite_schema WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
                )
            ]
            return [_describe(conn, name) for name in names]

    def get_object(self, full_name: str) -> DestinationObject:
        table = split_name(full_name)
        with _closing(_connect(self.config)) as conn:
            found = conn.execute(
                "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            if not found:
                raise ObjectNotFound(f"table {full_name!r} not found")
            return _describe(conn, found[0])

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return SQLiteWriter(self.config, ctx)

    object_types = (table_type(schema_hint=None),)

    def create_object(
        self, object_type: str, attributes: Mapping[str, Any], fields: list[Mapping[str, Any]]
    ) -> DestinationObject:
        table = str(attributes["table_name"])
        sql = create_table_sql("main." + quote_ident(table), fields, SQLITE_TYPES, quote_ident)
        with _closing(_connect(self.config)) as conn:
            try:
                conn.execute(sql)
                conn.commit()
            except sqlite3.Error as exc:
                raise TerminalError(str(exc).strip()) from exc
        return self.get_object(table)


class SQLiteWriter(BatchWriter):
    def __init__(self, config: SQLiteConfig, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.conn = _connect(config)
        self.target = "main." + quote_ident(split_name(ctx.object_name))
        self.stage = "temp." + quote_ident(f"_reflow_stage_{ctx.run_id}")
        self._staged_columns: tuple[str, ...] | None = None

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        columns = tuple(batch.schema.names)
        placeholders = ", ".join("?" for _ in columns)
        try:
            self._stage(columns)
            # BEGIN IMMEDIATE takes the write lock up front so a busy file fails here,
            # before any statement of the batch ran.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(
                    f"INSERT INTO {self.stage} ({_cols(columns)}) VALUES ({placeholders})",
                    _rows(batch),
                )
                rejected = self._resolve_lookups(batch, columns)
                self.conn.execute(self._merge_sql(columns, action))
                self.conn.execute(f"DELETE FROM {self.stage}")
            except BaseException:
                # SQLite may already have rolled back on its own (e.g. SQLITE_FULL).
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _classify(exc) from exc
        return WriteResult(rejected)

    def _resolve_lookups(
        self, batch: pa.RecordBatch, columns: tuple[str, ...]
    ) -> list[RejectedRecord]:
        """Lookup mappings: the staged value is the parent's ``lookup_field``; it becomes
        the key the foreign key references. A value no parent has rejects its record
        (taken out of the stage), as a CRM refuses an unknown parent."""
        rejected: list[RejectedRecord] = []
        key = quote_ident(self.ctx.key_field)
        for column, (parent, parent_field) in self.ctx.lookups.items():
            if column not in columns:
                continue
            col, ref = quote_ident(column), self._referenced(column, parent)
            source = f"main.{quote_ident(parent)} AS p WHERE p.{quote_ident(parent_field)}"
            missing = self.conn.execute(
                f"SELECT {key}, {col} FROM {self.stage} AS s WHERE {col} IS NOT NULL"
                f" AND NOT EXISTS (SELECT 1 FROM {source} = s.{col})").fetchall()
            rejected += self._not_found(batch, missing, column, parent, parent_field)
            if missing:
                self.conn.executemany(f"DELETE FROM {self.stage} WHERE {key} = ?",
                                      [(k,) for k, _ in missing])
            self.conn.execute(f"UPDATE {self.stage} AS s SET {col} = (SELECT p.{ref} FROM"
                              f" {source} = s.{col}) WHERE {col} IS NOT NULL")
        return sorted(rejected, key=lambda r: r.index)

    def _referenced(self, column: str, parent: str) -> str:
        """The parent column ``column``'s foreign key points at (its primary key when the
        key names none)."""
        table = split_name(self.ctx.object_name)
        for fk_parent, fk_column, fk_to in _foreign_keys(self.conn, table):
            if fk_column == column and fk_parent == parent and fk_to:
                return quote_ident(fk_to)
        pk = [r[1] for r in self.conn.execute(f"PRAGMA main.table_info({quote_ident(parent)})")
              if r[5]]
        return quote_ident(pk[0] if len(pk) == 1 else "rowid")

    def _not_found(
        self, batch: pa.RecordBatch, missing: list[tuple[Any, Any]], column: str, parent: str,
        parent_field: str,
    ) -> list[RejectedRecord]:
        if not missing:
            return []
        keys = batch.column(self.ctx.key_field).to_pylist()
        where = {k: i for i, k in enumerate(keys)}
        return [RejectedRecord(where[k], f"{column}: no {parent} with {parent_field} = {v!r}")
                for k, v in missing if k in where]

    def _stage(self, columns: tuple[str, ...]) -> None:
        if self._staged_columns == columns:
            return
        self.conn.execute(f"DROP TABLE IF EXISTS {self.stage}")
        # Copies each column's type affinity, so staged values convert as the target's.
        self.conn.execute(
            f"CREATE TABLE {self.stage} AS SELECT {_cols(columns)} FROM {self.target} WHERE 0"
        )
        self._staged_columns = columns

    def _merge_sql(self, columns: tuple[str, ...], action: Action) -> str:
        merge = Merge.of(self.target, self.stage, columns, self.ctx.key_field, quote_ident)
        others = [c for c in columns if c != self.ctx.key_field]
        if others and action in ("upsert", "update") and (
                self.ctx.keep_on_null or self.ctx.set_if_empty):
            if action == "update":
                sets = ", ".join(f"{quote_ident(c)} = {self._assigned(c, 's', 't.')}"
                                 for c in others)
                return (f"UPDATE {self.target} AS t SET {sets} FROM {self.stage} AS s"
                        f" WHERE t.{merge.key} = s.{merge.key}")
            # In an upsert's DO UPDATE a bare column is the existing row's.
            sets = ", ".join(f"{quote_ident(c)} = {self._assigned(c, 'excluded', '')}"
                             for c in others)
            return f"{_MERGE.append(merge)} ON CONFLICT ({merge.key}) DO UPDATE SET {sets}"
        return _MERGE.statement(merge, action)

    def _assigned(self, column: str, new_alias: str, current_prefix: str) -> str:
        quoted = quote_ident(column)
        return assigned(self.ctx, column, f"{new_alias}.{quoted}", f"{current_prefix}{quoted}")

    def close(self) -> None:
        self.conn.close()


class _SQLiteMerge(MergeDialect):
    def append(self, m: Merge) -> str:
        # "WHERE true" resolves SQLite's parsing ambiguity of INSERT ... SELECT ... ON.
        return m.insert_select(" WHERE true")

    def upsert(self, m: Merge) -> str:
        sets = ", ".join(f"{c} = excluded.{c}" for c in m.others)
        return f"{self.append(m)} ON CONFLICT ({m.key}) " + (
            f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
        )

    def insert(self, m: Merge) -> str:
        return f"{self.append(m)} ON CONFLICT ({m.key}) DO NOTHING"

    def update(self, m: Merge) -> str:
        return m.update_from()

    def delete(self, m: Merge) -> str:
        return f"DELETE FROM {m.target} WHERE {m.key} IN (SELECT {m.key} FROM {m.stage})"


_MERGE = _SQLiteMerge()


def split_name(full_name: str) -> str:
    """``main.table`` or ``table`` -> ``table``."""
    schema, dot, table = full_name.partition(".")
    return table if dot and schema.lower() == "main" else full_name


def _cols(columns: tuple[str, ...]) -> str:
    return column_list(columns, quote_ident)


def _connect(config: SQLiteConfig) -> sqlite3.Connection:
    try:
        # isolation_level=None: transactions are explicit, so one batch is one transaction.
        return sqlite3.connect(
            config.path, timeout=config.busy_timeout_seconds, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise _classify(exc) from exc


class _closing:
    """``with`` for a connection that closes it (sqlite3's own only ends a transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _describe(conn: sqlite3.Connection, table: str) -> DestinationObject:
    unique = _single_column_keys(conn, table)
    references = {column: parent for parent, column, _ in _foreign_keys(conn, table)}
    fields = []
    # table_info: cid, name, type, notnull, dflt_value, pk
    for _, name, dtype, notnull, default, pk in conn.execute(
        f"PRAGMA main.table_info({quote_ident(table)})"
    ):
        # An INTEGER PRIMARY KEY is the rowid: SQLite assigns it when absent.
        rowid = pk and dtype.upper() == "INTEGER"
        fields.append(
            DestinationField(
                full_name=name,
                label=name,
                type=dtype or "ANY",
                required=bool(notnull) and default is None and not rowid,
                identifier=name in unique,
                lookup_object=references.get(name),
            )
        )
    return DestinationObject(table, table, TABLE_OPERATIONS, tuple(fields))


def _foreign_keys(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, str | None]]:
    """(parent table, column, parent column or None for its primary key) of each
    single-column foreign key."""
    # foreign_key_list: id, seq, table, from, to, on_update, on_delete, match
    rows = list(conn.execute(f"PRAGMA main.foreign_key_list({quote_ident(table)})"))
    sizes: dict[int, int] = {}
    for row in rows:
        sizes[row[0]] = sizes.get(row[0], 0) + 1
    return [(r[2], r[3], r[4]) for r in rows if sizes[r[0]] == 1]


def _single_column_keys(conn: sqlite3.Connection, table: str) -> set[str]:
    keys = set()
    pk = [r[1] for r in conn.execute(f"PRAGMA main.table_info({quote_ident(table)})") if r[5]]
    if len(pk) == 1:
        keys.add(pk[0])
    # index_list: seq, name, unique, origin, partial
    for _, index, unique, _origin, partial in conn.execute(
        f"PRAGMA main.index_list({quote_ident(table)})"
    ):
        if not unique or partial:
            continue
        cols = [r[2] for r in conn.execute(f"PRAGMA main.index_info({quote_ident(index)})")]
        if len(cols) == 1 and cols[0] is not None:
            keys.add(cols[0])
    return keys


def _rows(batch: pa.RecordBatch) -> Iterator[tuple[Any, ...]]:
    columns = [[_adapt(v) for v in col.to_pylist()] for col in batch.columns]
    return zip(*columns, strict=True)


def _adapt(value: Any) -> Any:
    """Values sqlite3 cannot bind become their canonical text."""
    if value is None or isinstance(value, (int, float, str, bytes)):
        return value
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return json.dumps(value, default=str)


def _classify(exc: sqlite3.Error) -> Exception:
    message = str(exc).strip() or type(exc).__name__
    name = getattr(exc, "sqlite_errorname", "") or ""
    primary = "_".join(name.split("_")[:2])  # SQLITE_CONSTRAINT_UNIQUE -> SQLITE_CONSTRAINT
    if isinstance(exc, sqlite3.IntegrityError) or primary in _DATA_CODES:
        return BatchRejected(message)
    if primary in _BUSY_CODES:
        return TransientError(message)
    return TerminalError(message)
