"""MySQL and MariaDB source.

Rows stream through an unbuffered server-side cursor (``SSCursor``) and leave as one
Arrow batch per ``fetchmany`` chunk, so memory is bounded by the batch. Model SQL runs
inside ``START TRANSACTION READ ONLY`` as a derived table, under the server's own
statement timeout. Census documents read-only grants for MySQL, hence no bookkeeping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pydantic import Field, SecretStr

from reflow.connectors._dbapi import Converter, check_on_one_connection, rows_to_batch
from reflow.connectors._fields import hostname_field, password_field, port_field, user_field
from reflow.connectors._mysql import PORT, connect_kwargs
from reflow.connectors._sql import quote_backtick as quote_ident
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

_SYSTEM_SCHEMAS = ("information_schema", "mysql", "performance_schema", "sys")

# Client error codes (CR_*) that mean the server could not be reached right now.
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013}

_UNIQUE_COLUMNS = unique_columns_sql("tc.table_schema = %s AND tc.table_name = %s")


class MysqlConfig(ConnectorConfig):
    hostname: str = hostname_field()
    port: int = port_field(PORT)
    database: str = Field(title="Database", description="Database (schema) to connect to.")
    user: str = user_field("User to connect as; read-only grants are enough.")
    password: SecretStr | None = password_field()
    ssl: bool = Field(
        False,
        title="Require TLS",
        description="Connect over TLS and verify the server's certificate and host name.",
    )
    statement_timeout_seconds: int = Field(
        600,
        title="Statement timeout (s)",
        description="Longest a single statement may run.",
        ge=1,
    )


class MysqlSource(SourceConnector):
    service_name = "mysql"
    label = "MySQL"
    documentation_slug = "mysql"
    config_model = MysqlConfig
    capabilities = SourceCapabilities(supports_bookkeeping=False)
    config: MysqlConfig

    def _connect(self) -> Any:
        import pymysql

        kwargs = connect_kwargs(self.config)
        # TIMESTAMP values arrive in UTC, whatever the server's zone.
        kwargs["init_command"] = "SET time_zone = '+00:00'"
        if self.config.ssl:
            kwargs.update(ssl_verify_cert=True, ssl_verify_identity=True)
        try:
            conn = pymysql.connect(**kwargs)
        except pymysql.err.OperationalError as exc:
            message = _message(exc)
            if exc.args and exc.args[0] in _UNREACHABLE:
                raise TransientError(message) from exc
            raise TerminalError(message) from exc
        _set_statement_timeout(conn, self.config.statement_timeout_seconds)
        return conn

    def test_connection(self) -> list[TestStep]:
        def read_access(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.execute("SELECT table_name FROM information_schema.tables LIMIT 1")
                cur.fetchall()

        return check_on_one_connection(self._connect, [("Verify read access", read_access)])

    def list_tables(self) -> list[TableRef]:
        rows = self._fetch(
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN %s ORDER BY table_schema, table_name",
            (_SYSTEM_SCHEMAS,),
        )
        return [TableRef(*row) for row in rows]

    def list_columns(self, table: TableRef) -> list[Column]:
        rows = self._fetch(
            "SELECT column_name, column_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (table.schema, table.name),
        )
        if not rows:
            raise ObjectNotFound(f"table {table.schema}.{table.name} not found")
        unique = {name for (name,) in self._fetch(_UNIQUE_COLUMNS, (table.schema, table.name))}
        return [Column(name, dtype, name in unique) for name, dtype in rows]

    def query_columns(self, sql: str) -> list[Column]:
        from pymysql.constants import FIELD_TYPE

        names = {v: k.lower() for k, v in vars(FIELD_TYPE).items() if k.isupper()}
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                _run_read_only(cur, f"SELECT * FROM ({_strip(sql)}) AS _reflow_q LIMIT 0")
                return [Column(d[0], names.get(d[1], "unknown")) for d in cur.description or []]
        finally:
            conn.close()

    def table_query(self, table: TableRef) -> str:
        return f"SELECT * FROM {quote_ident(table.schema)}.{quote_ident(table.name)}"

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        import pymysql.cursors

        batch_size = batch_size or self.capabilities.batch_size
        conn = self._connect()
        try:
            cur = conn.cursor(pymysql.cursors.SSCursor)
            _run_read_only(cur, f"SELECT * FROM ({_strip(sql)}) AS _reflow_q")
            # The DB-API description lacks the charset and flags that tell text from
            # binary and signed from unsigned; PyMySQL's field packets have them.
            columns = [_arrow_column(f) for f in cur._result.fields]
            schema = pa.schema([field for field, _ in columns])
            while rows := _fetchmany(cur, batch_size):
                yield rows_to_batch(rows, schema, [convert for _, convert in columns])
        finally:
            # Closing the connection (not the cursor) drops an unread result instead
            # of draining it over the wire.
            conn.close()

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()


def _set_statement_timeout(conn: Any, seconds: int) -> None:
    # MySQL and MariaDB spell this setting differently (and in different units).
    with conn.cursor() as cur:
        if "mariadb" in conn.get_server_info().lower():
            cur.execute("SET SESSION max_statement_time = %s", (seconds,))
        else:
            cur.execute("SET SESSION max_execution_time = %s", (seconds * 1000,))


def _run_read_only(cur: Any, sql: str) -> None:
    import pymysql

    try:
        cur.execute("START TRANSACTION READ ONLY")
        cur.execute(sql)
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] in _UNREACHABLE:
            raise TransientError(_message(exc)) from exc
        raise InvalidQuery(_message(exc)) from exc
    except pymysql.MySQLError as exc:
        raise InvalidQuery(_message(exc)) from exc


def _fetchmany(cur: Any, size: int) -> list[tuple[Any, ...]]:
    import pymysql

    try:
        return list(cur.fetchmany(size))
    except pymysql.err.OperationalError as exc:
        # The statement timeout and lost connections surface mid-stream.
        raise TransientError(_message(exc)) from exc
    except pymysql.MySQLError as exc:
        raise InvalidQuery(_message(exc)) from exc


def _arrow_column(field: Any) -> tuple[pa.Field, Converter]:
    """Arrow type and value converter for one result column's wire metadata."""
    from pymysql.constants import FIELD_TYPE as T
    from pymysql.constants.FLAG import UNSIGNED

    code, unsigned = field.type_code, bool(field.flags & UNSIGNED)
    arrow: pa.DataType
    convert: Converter = None
    if code in (T.TINY, T.SHORT, T.LONG, T.INT24, T.YEAR):
        arrow = pa.int64()
    elif code == T.LONGLONG:
        arrow = pa.uint64() if unsigned else pa.int64()
    elif code in (T.FLOAT, T.DOUBLE):
        arrow = pa.float64()
    elif code in (T.DECIMAL, T.NEWDECIMAL):
        arrow, convert = _decimal(field.length, field.scale, unsigned)
    elif code in (T.DATE, T.NEWDATE):
        arrow, convert = pa.date32(), _only(dt.date)
    elif code == T.DATETIME:
        arrow, convert = pa.timestamp("us"), _only(dt.datetime)
    elif code == T.TIMESTAMP:
        arrow, convert = pa.timestamp("us", tz="UTC"), _only(dt.datetime)
    elif code == T.TIME:
        arrow = pa.duration("us")  # MySQL TIME is an interval: it may exceed a day
    elif code == T.BIT:
        arrow, convert = pa.uint64(), _bits
    elif field.charsetnr == 63 and code != T.JSON:  # 63 is the "binary" charset
        arrow = pa.binary()
    else:
        arrow, convert = pa.string(), _text
    return pa.field(field.name, arrow), convert


def _decimal(length: int, scale: int, unsigned: bool) -> tuple[pa.DataType, Converter]:
    # The wire length counts the sign and the decimal point.
    precision = length - (1 if scale else 0) - (0 if unsigned else 1)
    if 0 < precision <= 38:
        return pa.decimal128(precision, scale), None
    return pa.string(), _text


def _only(kind: type) -> Converter:
    # Zero dates ('0000-00-00') arrive as strings: they are no date, so NULL.
    return lambda v: v if isinstance(v, kind) else None


def _bits(value: Any) -> int | None:
    return None if value is None else int.from_bytes(value, "big")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _message(exc: Exception) -> str:
    # PyMySQL errors are (code, message) tuples; the message is the server's own.
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return str(args[1] if len(args) > 1 else exc).strip() or type(exc).__name__
