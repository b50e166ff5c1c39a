"""MySQL / MariaDB destination.

Objects are the base tables the user may ``INSERT`` into, in every database of the
server except the system ones, named ``database.table`` (a bare ``table`` is in the
configured database). Privileges are read from ``information_schema``'s
``USER_PRIVILEGES``, ``SCHEMA_PRIVILEGES`` and ``TABLE_PRIVILEGES`` for the current
user; privileges held only through a role are not seen.

Each batch is written to a temporary CSV file and bulk loaded with ``LOAD DATA
LOCAL INFILE`` into a ``TEMPORARY`` staging table with the target's column types,
then merged with one statement per action, in one transaction per batch:

* upsert: ``INSERT ... SELECT ... ON DUPLICATE KEY UPDATE``
* insert: the same with a no-op update, not ``INSERT IGNORE``, because ``IGNORE``
  also turns data errors into warnings and the batch would be silently truncated
* update: ``UPDATE ... JOIN``; delete: ``DELETE ... JOIN``; append: ``INSERT ... SELECT``

``ON DUPLICATE KEY`` matches on any unique key of the table, not only the sync key.
With ``LOCAL`` the server turns data errors into warnings (it cannot stop the
upload), so the load's warnings are checked and any of them rejects the batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from typing import Any

import pyarrow as pa
from pydantic import Field, SecretStr

from reflow.connectors._dbapi import check_on_one_connection
from reflow.connectors._fields import hostname_field, password_field, port_field, user_field
from reflow.connectors._mysql import PORT, connect_kwargs
from reflow.connectors._sql import (
    TABLE_OPERATIONS,
    CatalogColumn,
    Merge,
    MergeDialect,
    assigned,
    catalog_objects,
    column_list,
)
from reflow.connectors._sql import quote_backtick as quote_ident
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

# Server errors a retry can get past: too many connections, shutdown, lock wait
# timeout, deadlock, connection killed. Client errors (2000-2999) are network ones.
_TRANSIENT = {1040, 1053, 1205, 1213, 1927}
# Server errors caused by a value of the batch.
_DATA = {1048, 1062, 1263, 1264, 1265, 1292, 1364, 1366, 1406, 1451, 1452, 3819, 4025}

_GRANTEE = (
    "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',"
    " SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
)

_OBJECTS_SQL = f"""
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE,
       c.COLUMN_DEFAULT IS NOT NULL OR c.EXTRA LIKE '%%auto_increment%%',
       EXISTS (
         SELECT 1 FROM information_schema.STATISTICS s
         WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME
           AND s.NON_UNIQUE = 0 AND s.COLUMN_NAME = c.COLUMN_NAME
           AND (SELECT COUNT(*) FROM information_schema.STATISTICS s2
                WHERE s2.TABLE_SCHEMA = s.TABLE_SCHEMA AND s2.TABLE_NAME = s.TABLE_NAME
                  AND s2.INDEX_NAME = s.INDEX_NAME) = 1)
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t
  ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE t.TABLE_TYPE = 'BASE TABLE'
  AND c.TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys')
  AND (EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES p
               WHERE p.GRANTEE = {_GRANTEE} AND p.PRIVILEGE_TYPE = 'INSERT')
    OR EXISTS (SELECT 1 FROM information_schema.SCHEMA_PRIVILEGES p
               WHERE p.GRANTEE = {_GRANTEE} AND p.PRIVILEGE_TYPE = 'INSERT'
                 AND c.TABLE_SCHEMA LIKE p.TABLE_SCHEMA)
    OR EXISTS (SELECT 1 FROM information_schema.TABLE_PRIVILEGES p
               WHERE p.GRANTEE = {_GRANTEE} AND p.PRIVILEGE_TYPE = 'INSERT'
                 AND p.TABLE_SCHEMA = c.TABLE_SCHEMA AND p.TABLE_NAME = c.TABLE_NAME))
  {{filter}}
ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION
"""


class MySQLConfig(ConnectorConfig):
    hostname: str = hostname_field()
    port: int = port_field(PORT)
    database: str = Field(title="Database", description="Default database (schema).")
    user: str = user_field()
    password: SecretStr | None = password_field()
    statement_timeout_seconds: int = Field(
        600,
        title="Statement timeout (s)",
        description="Longest the client waits for the server to answer one statement.",
        ge=1,
    )


class MySQLDestination(DestinationConnector):
    service_name = "mysql"
    label = "MySQL"
    documentation_slug = "mysql"
    config_model = MySQLConfig
    capabilities = DestinationCapabilities(
        operations=TABLE_OPERATIONS, batch_size=100_000, field_preferences=True
    )
    config: MySQLConfig

    def test_connection(self) -> list[TestStep]:
        def write_access(conn: Any) -> None:
            _run(conn, "CREATE TEMPORARY TABLE _reflow_probe (x INT)")
            _run(conn, "DROP TEMPORARY TABLE _reflow_probe")

        def local_infile(conn: Any) -> None:
            if not int(_run(conn, "SELECT @@GLOBAL.local_infile")[0][0]):
                raise RuntimeError(
                    "the server refuses LOAD DATA LOCAL INFILE (local_infile is OFF);"
                    " an administrator can run SET GLOBAL local_infile = 1"
                )

        return check_on_one_connection(
            lambda: connect(self.config),
            [
                ("Verify write access", write_access),
                ("Verify bulk load (LOCAL INFILE)", local_infile),
            ],
            probe=lambda conn: _run(conn, "SELECT 1"),
        )

    def list_objects(self) -> list[DestinationObject]:
        return self._objects(None)

    def get_object(self, full_name: str) -> DestinationObject:
        found = self._objects(split_qualified(full_name, self.config.database))
        if not found:
            raise ObjectNotFound(f"table {full_name!r} not found or not writable")
        return found[0]

    def _objects(self, only: tuple[str, str] | None) -> list[DestinationObject]:
        sql = _OBJECTS_SQL.format(
            filter="AND c.TABLE_SCHEMA = %s AND c.TABLE_NAME = %s" if only else ""
        )
        conn = connect(self.config)
        try:
            rows = _run(conn, sql, only)
        finally:
            conn.close()
        return catalog_objects(
            CatalogColumn(
                schema, table, column, dtype, nullable == "NO" and not has_default, bool(unique)
            )
            for schema, table, column, dtype, nullable, has_default, unique in rows
        )

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return MySQLWriter(self.config, ctx)


class MySQLWriter(BatchWriter):
    def __init__(self, config: MySQLConfig, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.conn = connect(config)
        self.target = quote_qualified(*split_qualified(ctx.object_name, config.database))
        self.stage = quote_ident(f"_reflow_stage_{ctx.run_id}")
        self._staged_columns: tuple[str, ...] | None = None

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        columns = tuple(batch.schema.names)
        self._stage(columns)
        fd, path = tempfile.mkstemp(prefix="reflow_", suffix=".csv")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(to_csv(batch))
            self.conn.begin()
            try:
                self._load(path, columns)
                _run(self.conn, self._merge_sql(columns, action))
                _run(self.conn, f"DELETE FROM {self.stage}")
                self.conn.commit()
            except BaseException:
                _quietly_rollback(self.conn)
                raise
        finally:
            os.unlink(path)
        return WriteResult()

    def _stage(self, columns: tuple[str, ...]) -> None:
        if self._staged_columns == columns:
            return
        _run(self.conn, f"DROP TEMPORARY TABLE IF EXISTS {self.stage}")
        # The target's column types: values are converted (and refused) while loading,
        # and the merge joins like-typed keys, so it can use the target's index.
        _run(
            self.conn,
            f"CREATE TEMPORARY TABLE {self.stage} ENGINE=InnoDB"
            f" AS SELECT {_cols(columns)} FROM {self.target} LIMIT 0",
        )
        self._staged_columns = columns

    def _load(self, path: str, columns: tuple[str, ...]) -> None:
        _run(
            self.conn,
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.stage} CHARACTER SET utf8mb4"
            " FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY ''"
            f" LINES TERMINATED BY '\\n' ({_cols(columns)})",
            (path,),
        )
        warnings = [w for w in _run(self.conn, "SHOW WARNINGS") if w[0] != "Note"]
        if warnings:
            raise BatchRejected(f"({warnings[0][1]}) {warnings[0][2]}")

    def _merge_sql(self, columns: tuple[str, ...], action: Action) -> str:
        merge = Merge.of(self.target, self.stage, columns, self.ctx.key_field, quote_ident)
        others = [c for c in columns if c != self.ctx.key_field]
        if others and action in ("upsert", "update") and (
                self.ctx.keep_on_null or self.ctx.set_if_empty):
            if action == "update":
                sets = ", ".join(f"t.{quote_ident(c)} = {self._assigned(c, 's.', 't.')}"
                                 for c in others)
                return (f"UPDATE {self.target} AS t JOIN {self.stage} AS s"
                        f" ON t.{merge.key} = s.{merge.key} SET {sets}")
            # The existing row by the table's name: the stage is aliased ``s`` beside it.
            sets = ", ".join(f"{quote_ident(c)} = {self._assigned(c, 'VALUES', self.target + '.')}"
                             for c in others)
            return f"{_MERGE.append(merge)} ON DUPLICATE KEY UPDATE {sets}"
        return _MERGE.statement(merge, action)

    def _assigned(self, column: str, new_prefix: str, current_prefix: str) -> str:
        quoted = quote_ident(column)
        new = f"VALUES({quoted})" if new_prefix == "VALUES" else f"{new_prefix}{quoted}"
        return assigned(self.ctx, column, new, f"{current_prefix}{quoted}")

    def close(self) -> None:
        self.conn.close()


def connect(config: MySQLConfig) -> Any:
    """A PyMySQL connection in strict mode, with failures turned into typed errors."""
    import pymysql

    try:
        conn = pymysql.connect(
            **connect_kwargs(config),
            local_infile=True,
            read_timeout=config.statement_timeout_seconds,
            write_timeout=config.statement_timeout_seconds,
            autocommit=False,
        )
    except pymysql.MySQLError as exc:
        raise classify(exc) from exc
    # Strict mode makes a value the column cannot take an error rather than a
    # silent truncation; UTC so timestamps mean the same on every server.
    _run(
        conn,
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''),"
        " 'STRICT_ALL_TABLES'), time_zone = '+00:00'",
    )
    return conn


def _run(conn: Any, sql: str, args: Any = None) -> tuple[tuple[Any, ...], ...]:
    import pymysql

    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    except pymysql.MySQLError as exc:
        raise classify(exc) from exc


def classify(exc: Exception) -> Exception:
    """The typed error for a PyMySQL failure, chosen by the server's error code."""
    import pymysql

    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = " ".join(str(a) for a in exc.args[1:]) or str(exc) or type(exc).__name__
    if code:
        message = f"({code}) {message}"
    if isinstance(exc, pymysql.err.InterfaceError) or code in _TRANSIENT or 2000 <= code < 3000:
        return TransientError(message)
    if isinstance(exc, (pymysql.err.DataError, pymysql.err.IntegrityError)) or code in _DATA:
        return BatchRejected(message)
    return TerminalError(message)


class _MySQLMerge(MergeDialect):
    def append(self, m: Merge) -> str:
        return m.insert_select(" AS s")

    def upsert(self, m: Merge) -> str:
        sets = ", ".join(f"{c} = VALUES({c})" for c in m.others) or f"{m.key} = {m.key}"
        return f"{self.append(m)} ON DUPLICATE KEY UPDATE {sets}"

    def insert(self, m: Merge) -> str:
        # A no-op update, not INSERT IGNORE, which would also ignore data errors.
        return f"{self.append(m)} ON DUPLICATE KEY UPDATE {m.key} = {m.target}.{m.key}"

    def update(self, m: Merge) -> str:
        # Both tables have every column: an unqualified name would be ambiguous.
        return (
            f"UPDATE {m.target} AS t JOIN {m.stage} AS s ON t.{m.key} = s.{m.key}"
            f" SET {m.assignments(qualify=True)}"
        )

    def delete(self, m: Merge) -> str:
        return f"DELETE t FROM {m.target} AS t JOIN {m.stage} AS s ON t.{m.key} = s.{m.key}"


_MERGE = _MySQLMerge()


def _quietly_rollback(conn: Any) -> None:
    # After a lost connection there is nothing to roll back; the error that got us
    # here is the one to report.
    with contextlib.suppress(Exception):
        conn.rollback()


def split_qualified(full_name: str, default_database: str) -> tuple[str, str]:
    """``database.table`` -> (database, table); a bare name is in the default one."""
    database, dot, table = full_name.partition(".")
    return (database, table) if dot else (default_database, database)


def quote_qualified(*parts: str) -> str:
    return ".".join(quote_ident(p) for p in parts)


def _cols(columns: tuple[str, ...]) -> str:
    return column_list(columns, quote_ident)


def to_csv(batch: pa.RecordBatch) -> str:
    """CSV that ``LOAD DATA ... OPTIONALLY ENCLOSED BY '"' ESCAPED BY ''`` reads back
    exactly: text always quoted (so "" is an empty string), NULL as a bare word."""
    columns = [[_field(v) for v in col.to_pylist()] for col in batch.columns]
    return "".join(",".join(row) + "\n" for row in zip(*columns, strict=True))


def _field(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        text = value.isoformat(sep=" ")
    elif isinstance(value, (dt.date, dt.time)):
        text = value.isoformat()
    elif isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return '"' + text.replace('"', '""') + '"'
