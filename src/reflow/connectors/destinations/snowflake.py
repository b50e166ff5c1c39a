"""Snowflake destination.

Objects are the base tables of the configured database that the role can see,
named ``SCHEMA.TABLE`` as Snowflake stores them (unquoted identifiers are upper
case); a bare ``TABLE`` is in the configured schema (``PUBLIC`` when none). Names
are matched case-insensitively when there is no exact match, and so are a batch's
column names, so ``people.id`` finds ``PEOPLE.ID``. Snowflake's grants flow through
role hierarchies ``information_schema`` does not resolve, so a table the role can
see but not write is listed and fails on write with a ``TerminalError``.

Identifiers come from ``SHOW PRIMARY KEYS`` and ``SHOW UNIQUE KEYS`` (single-column
ones); Snowflake records but does not enforce these constraints.

Each batch is bound with ``executemany`` (qmark array binding: Snowflake uploads
large arrays to a temporary stage on its own) into a temporary staging table with
the target's column types, then merged with one statement per action: ``MERGE``
for upsert and insert, ``UPDATE ... FROM``, ``DELETE ... USING``, ``INSERT ...
SELECT``. Only that one statement touches the target, so it changes atomically and
a batch refused while staging leaves it as it was. No pandas is needed.

Tested against ``fakesnow`` in server mode (the real connector over HTTP). What it
could not emulate: authentication (any password logs in, so bad credentials are
tested as an unreachable host), ``VARCHAR(n)`` length limits (a too-long string is
stored, so rejection is tested with text into a NUMBER column), ``SHOW UNIQUE
KEYS`` (always empty), NOT NULL violations (an HTTP 500 instead of error 100072),
stage-based array binding for big batches, and ``MERGE`` whose clauses do not name
the key (why update and delete are not ``MERGE`` statements).
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, SecretStr

from reflow.connectors._dbapi import check_on_one_connection
from reflow.connectors._fields import password_field, user_field
from reflow.connectors._sql import (
    TABLE_OPERATIONS,
    CatalogColumn,
    Merge,
    MergeDialect,
    catalog_objects,
    column_list,
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
from reflow.connectors.outbound import check_server

_COLUMNS_SQL = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable,
       c.column_default IS NOT NULL OR c.is_identity = 'YES'
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE t.table_type = 'BASE TABLE' AND c.table_schema <> 'INFORMATION_SCHEMA'
  {filter}
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""

# Snowflake error numbers a retry can get past: statement canceled or timed out,
# warehouse busy/suspended, too many statements queued.
_TRANSIENT = {604, 605, 608, 625, 630, 90064, 390114}


class SnowflakeConfig(ConnectorConfig):
    account: str = Field(title="Account", description="Account identifier, e.g. xy12345.us-east-1.")
    user: str = user_field()
    password: SecretStr | None = password_field()
    warehouse: str = Field(title="Warehouse", description="Warehouse that runs the writes.")
    database: str = Field(title="Database", description="Database holding the target tables.")
    schema_name: str | None = Field(
        None,
        alias="schema",
        title="Schema",
        description="Schema of tables named without one; PUBLIC when empty.",
    )
    role: str | None = Field(
        None, title="Role", description="Role to use; the user's default if empty."
    )
    host: str | None = Field(
        None,
        title="Host",
        description="Host to connect to instead of <account>.snowflakecomputing.com"
        " (PrivateLink, or a Snowflake-compatible endpoint).",
    )
    port: int | None = Field(None, title="Port", description="Port of the host.", ge=1, le=65535)
    protocol: Literal["https", "http"] = Field(
        "https", title="Protocol", description="https, or http for a local emulator."
    )
    login_timeout_seconds: int = Field(
        60, title="Login timeout (s)", description="Longest a login may take.", ge=1
    )
    statement_timeout_seconds: int = Field(
        3600, title="Statement timeout (s)", description="Longest one statement may run.", ge=1
    )

    def connection_details(self) -> dict[str, Any]:
        details = super().connection_details()
        details["schema"] = details.pop("schema_name", None)
        return details


class SnowflakeDestination(DestinationConnector):
    service_name = "snowflake"
    label = "Snowflake"
    documentation_slug = "snowflake"
    config_model = SnowflakeConfig
    capabilities = DestinationCapabilities(operations=TABLE_OPERATIONS, batch_size=100_000)
    config: SnowflakeConfig

    def test_connection(self) -> list[TestStep]:
        def database(conn: Any) -> None:
            found = _run(conn, "SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()")
            if not found or not found[0][0]:
                raise RuntimeError(f"database {self.config.database!r} is not usable by this role")

        def write_access(conn: Any) -> None:
            _run(conn, "CREATE TEMPORARY TABLE _REFLOW_PROBE (X INTEGER)")
            _run(conn, "DROP TABLE _REFLOW_PROBE")

        return check_on_one_connection(
            lambda: connect(self.config),
            [("Verify database", database), ("Verify write access", write_access)],
            probe=lambda conn: _run(conn, "SELECT CURRENT_VERSION()"),
        )

    def list_objects(self) -> list[DestinationObject]:
        with _Connection(self.config) as conn:
            return _objects(conn, self.config.database, None)

    def get_object(self, full_name: str) -> DestinationObject:
        with _Connection(self.config) as conn:
            return _resolve_object(conn, self.config, full_name)

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return SnowflakeWriter(self.config, ctx)


class SnowflakeWriter(BatchWriter):
    def __init__(self, config: SnowflakeConfig, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.conn = connect(config)
        self.object = _resolve_object(self.conn, config, ctx.object_name)
        self.target = ".".join(quote_ident(p) for p in self.object.full_name.split(".", 1))
        self.stage = quote_ident(f"_REFLOW_STAGE_{ctx.run_id}")
        self._staged_columns: tuple[str, ...] | None = None

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        if batch.num_rows == 0:
            return WriteResult()
        columns = tuple(self._column(name) for name in batch.schema.names)
        key = self._column(self.ctx.key_field)
        self._stage(columns)
        placeholders = ", ".join("?" for _ in columns)
        try:
            with self.conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {self.stage} ({_cols(columns)}) VALUES ({placeholders})",
                    list(_rows(batch)),
                )
        except Exception as exc:
            raise classify(exc) from exc
        _run(self.conn, _merge_sql(self.target, self.stage, columns, key, action))
        return WriteResult()

    def _column(self, name: str) -> str:
        """The table's own spelling of a batch column (exact, else case-insensitive)."""
        names = [f.full_name for f in self.object.fields]
        if name in names:
            return name
        matches = [n for n in names if n.lower() == name.lower()]
        if len(matches) != 1:
            raise TerminalError(f"column {name!r} does not exist in {self.object.full_name}")
        return matches[0]

    def _stage(self, columns: tuple[str, ...]) -> None:
        if self._staged_columns == columns:
            # Emptied before, not after, a batch: a batch that failed midway left rows.
            _run(self.conn, f"DELETE FROM {self.stage}")
            return
        _run(
            self.conn,
            f"CREATE OR REPLACE TEMPORARY TABLE {self.stage}"
            f" AS SELECT {_cols(columns)} FROM {self.target} LIMIT 0",
        )
        self._staged_columns = columns

    def close(self) -> None:
        self.conn.close()


class _SnowflakeMerge(MergeDialect):
    # fakesnow runs no MERGE whose clauses do not name the key: update and delete
    # are their own statements.
    def upsert(self, m: Merge) -> str:
        return m.merge_into(when_matched=m.update_set(), insert=True)

    def insert(self, m: Merge) -> str:
        return m.merge_into(when_matched=None, insert=True)

    def update(self, m: Merge) -> str:
        return m.update_from()

    def delete(self, m: Merge) -> str:
        return f"DELETE FROM {m.target} AS t USING {m.stage} AS s WHERE t.{m.key} = s.{m.key}"


_MERGE = _SnowflakeMerge()


def _merge_sql(target: str, stage: str, columns: tuple[str, ...], key: str, action: Action) -> str:
    return _MERGE.statement(Merge.of(target, stage, columns, key, quote_ident), action)


def _resolve_object(conn: Any, config: SnowflakeConfig, full_name: str) -> DestinationObject:
    schema, dot, table = full_name.partition(".")
    if not dot:
        schema, table = config.schema_name or "PUBLIC", schema
    found = _objects(conn, config.database, (schema, table))
    exact = [o for o in found if o.full_name == f"{schema}.{table}"]
    if len(exact) == 1 or len(found) == 1:
        return (exact or found)[0]
    raise ObjectNotFound(f"table {full_name!r} not found or not visible to the role")


def _objects(conn: Any, database: str, only: tuple[str, str] | None) -> list[DestinationObject]:
    sql = _COLUMNS_SQL.format(
        filter="AND UPPER(c.table_schema) = UPPER(?) AND UPPER(c.table_name) = UPPER(?)"
        if only
        else ""
    )
    rows = _run(conn, sql, only)
    keys = _single_column_keys(conn, database, {r[0] for r in rows})
    return catalog_objects(
        CatalogColumn(
            schema,
            table,
            column,
            dtype,
            nullable == "NO" and not has_default,
            (schema, table, column) in keys,
        )
        for schema, table, column, dtype, nullable, has_default in rows
    )


def _single_column_keys(conn: Any, database: str, schemas: set[str]) -> set[tuple[str, str, str]]:
    counts: dict[tuple[str, str, str], list[str]] = {}
    for schema in sorted(schemas):
        where = f"{quote_ident(database)}.{quote_ident(schema)}"
        for kind in ("PRIMARY", "UNIQUE"):
            with conn.cursor() as cur:
                try:
                    cur.execute(f"SHOW {kind} KEYS IN SCHEMA {where}")
                except Exception as exc:
                    raise classify(exc) from exc
                names = [d.name.lower() for d in cur.description]
                for row in cur.fetchall():
                    r = dict(zip(names, row, strict=True))
                    constraint = (r["schema_name"], r["table_name"], r["constraint_name"])
                    counts.setdefault(constraint, []).append(r["column_name"])
    return {(s, t, cols[0]) for (s, t, _), cols in counts.items() if len(cols) == 1}


def connect(config: SnowflakeConfig) -> Any:
    """A Snowflake connection, with failures turned into typed errors."""
    import snowflake.connector

    kwargs: dict[str, Any] = {
        "account": config.account,
        "user": config.user,
        "warehouse": config.warehouse,
        "database": config.database,
        "schema": config.schema_name,
        "role": config.role,
        "protocol": config.protocol,
        "login_timeout": config.login_timeout_seconds,
        # qmark binds server-side, so values are never spliced into SQL text.
        "paramstyle": "qmark",
        "session_parameters": {
            "STATEMENT_TIMEOUT_IN_SECONDS": config.statement_timeout_seconds,
            "QUERY_TAG": "reflow",
        },
    }
    if config.password is not None:
        kwargs["password"] = config.password.get_secret_value()
    if config.host:
        kwargs["host"] = config.host
        check_server(config.host, config.port, default_port=443)
    if config.port:
        kwargs["port"] = config.port
    try:
        return snowflake.connector.connect(**{k: v for k, v in kwargs.items() if v is not None})
    except Exception as exc:
        raise classify(exc, login=True) from exc


class _Connection:
    def __init__(self, config: SnowflakeConfig) -> None:
        self.conn = connect(config)

    def __enter__(self) -> Any:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _run(conn: Any, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    except Exception as exc:
        raise classify(exc) from exc


def classify(exc: Exception, *, login: bool = False) -> Exception:
    """The typed error for a connector failure, chosen by Snowflake's error number
    and SQLSTATE (class 22 is a data exception, 23 a constraint violation)."""
    from snowflake.connector import errors

    if isinstance(exc, (TerminalError, TransientError, BatchRejected)):
        return exc
    if not isinstance(exc, errors.Error):
        return TransientError(str(exc) or type(exc).__name__)
    message = str(exc.msg or exc).strip()
    errno, sqlstate = exc.errno or 0, exc.sqlstate or ""
    if login and (390000 <= errno < 391000 or "password" in message.lower()):
        return TerminalError(message)
    if sqlstate.startswith(("22", "23")) or 100000 <= errno < 101000:
        return BatchRejected(message)
    retryable = (
        errors.OperationalError,
        errors.InterfaceError,
        errors.InternalServerError,
        errors.ServiceUnavailableError,
        errors.GatewayTimeoutError,
        errors.RequestTimeoutError,
        errors.BadGatewayError,
        errors.TooManyRequests,
        errors.OtherHTTPRetryableError,
        errors.RequestExceedMaxRetryError,
    )
    if isinstance(exc, retryable) or errno in _TRANSIENT or sqlstate.startswith("08"):
        return TransientError(message)
    return TerminalError(message)


def _cols(columns: tuple[str, ...]) -> str:
    return column_list(columns, quote_ident)


def _rows(batch: pa.RecordBatch) -> Any:
    import json

    def adapt(value: Any) -> Any:
        # Semi-structured values travel as JSON text; the target column parses them.
        return json.dumps(value, default=str) if isinstance(value, (dict, list)) else value

    columns = [[adapt(v) for v in col.to_pylist()] for col in batch.columns]
    return zip(*columns, strict=True)
