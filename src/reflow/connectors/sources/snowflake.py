"""Snowflake source, through the official ``snowflake-connector-python``.

Rows arrive as the connector's own Arrow result chunks (``fetch_arrow_batches``) and
leave re-sliced to ``batch_size``, cast to one schema decided from the result
metadata (Snowflake sends each chunk in the narrowest type its values fit).
Snowflake has no read-only transaction: model SQL is run as a derived table, which
makes any statement but a query a syntax error, and the connector refuses multiple
statements; a read-only role is still the real guard.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from pydantic import AliasChoices, ConfigDict, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from reflow.connectors._dbapi import check_on_one_connection
from reflow.connectors._fields import password_field, user_field
from reflow.connectors._sql import quote_double as quote_ident
from reflow.connectors._sql import strip_statement
from reflow.connectors.base import (
    Column,
    ConnectorConfig,
    SourceCapabilities,
    SourceConnector,
    TableRef,
    TestStep,
)
from reflow.connectors.errors import InvalidQuery, ObjectNotFound, TerminalError, TransientError
from reflow.connectors.outbound import check_server

_NEEDS = (
    "A Snowflake connection needs account, user, warehouse and database, plus a password"
    " (or use_keypair: true with private_key)"
)


class SnowflakeConfig(ConnectorConfig):
    # Validation errors must never echo the submitted credentials (they hold secrets).
    model_config = ConfigDict(hide_input_in_errors=True)

    account: str = Field(
        title="Account",
        description="Account identifier: the part before .snowflakecomputing.com,"
        " e.g. xy12345.us-east-1 or myorg-myaccount.",
    )
    user: str = user_field()
    warehouse: str = Field(title="Warehouse", description="Warehouse that runs the queries.")
    database: str = Field(title="Database", description="Database the models read from.")
    role: str | None = Field(
        None, title="Role", description="Role to use; the user's default if unset."
    )
    schema_: str | None = Field(
        None,
        title="Schema Name",
        description="Default schema for unqualified names in models.",
        validation_alias=AliasChoices("schema", "schema_"),
        serialization_alias="schema",
    )
    use_keypair: bool = Field(
        False, title="Use key-pair authentication", description="Authenticate with a private key."
    )
    password: SecretStr | None = password_field("The user's password, unless use_keypair is true.")
    private_key: SecretStr | None = Field(
        None,
        title="Private key",
        description="PKCS#8 PEM text, including the -----BEGIN PRIVATE KEY----- lines.",
        validation_alias=AliasChoices("private_key", "private_key_pkcs8"),
    )
    private_key_passphrase: SecretStr | None = Field(
        None, title="Private key passphrase", description="Passphrase of an encrypted private key."
    )
    endpoint_url: str | None = Field(
        None,
        title="Endpoint URL",
        description="Only to reach Snowflake through another address (a proxy, PrivateLink or"
        " a local emulator), e.g. https://xy12345.privatelink.snowflakecomputing.com.",
    )
    statement_timeout_seconds: int = Field(
        600, title="Statement timeout (s)", description="Longest a single statement may run.", ge=1
    )
    login_timeout_seconds: int = Field(
        60, title="Login timeout (s)", description="Longest to wait for a login.", ge=1
    )

    @model_validator(mode="before")
    @classmethod
    def _name_what_is_missing(cls, data: Any) -> Any:
        # One message listing every missing key, rather than pydantic's per-field noise:
        # it is what a user sees when credentials meant for another type were sent.
        if not isinstance(data, dict):
            return data
        given = {k for k, v in data.items() if v not in (None, "")}
        missing = [k for k in ("account", "warehouse", "database") if k not in given]
        if not given & {"user", "username"}:
            missing.insert(1, "user")
        if str(data.get("use_keypair", "")).lower() in ("true", "1"):
            if not given & {"private_key", "private_key_pkcs8"}:
                missing.append("private_key")
        elif "password" not in given:
            missing.append("password")
        if missing:
            raise PydanticCustomError(
                "snowflake_credentials",
                "{needs}; missing: {missing}",
                {"needs": _NEEDS, "missing": ", ".join(missing)},
            )
        return data

    def connection_details(self) -> dict[str, Any]:
        details = super().connection_details()
        details["schema"] = details.pop("schema_", None)
        return details


class SnowflakeSource(SourceConnector):
    service_name = "snowflake"
    label = "Snowflake"
    documentation_slug = "snowflake"
    config_model = SnowflakeConfig
    capabilities = SourceCapabilities()
    config: SnowflakeConfig

    def _connect(self) -> Any:
        import snowflake.connector

        try:
            return snowflake.connector.connect(**_connect_kwargs(self.config))
        except snowflake.connector.errors.DatabaseError as exc:
            # 250001 and friends: the backend could not be reached at all.
            if isinstance(exc, snowflake.connector.errors.OperationalError):
                raise TransientError(_message(exc)) from exc
            raise TerminalError(_message(exc)) from exc

    def test_connection(self) -> list[TestStep]:
        def run(conn: Any, sql: str, *params: Any) -> None:
            conn.cursor().execute(sql, params or None).fetchall()

        def use(conn: Any, kind: str, name: str | None) -> None:
            if not name:
                return
            try:
                run(conn, f"USE {kind} IDENTIFIER(%s)", name)
            except Exception as exc:
                # Snowflake's "Object does not exist" does not say which object.
                raise TerminalError(f"{kind.lower()} {name!r}: {_message(exc)}") from exc

        def database(conn: Any) -> None:
            use(conn, "DATABASE", self.config.database)
            use(conn, "SCHEMA", self.config.schema_)

        def read_access(conn: Any) -> None:
            run(conn, "SELECT table_name FROM information_schema.tables LIMIT 1")

        return check_on_one_connection(
            self._connect,
            [
                ("Verify warehouse", lambda conn: use(conn, "WAREHOUSE", self.config.warehouse)),
                ("Verify database", database),
                ("Verify read access", read_access),
            ],
        )

    def list_tables(self) -> list[TableRef]:
        rows = self._fetch(
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema <> 'INFORMATION_SCHEMA' ORDER BY table_schema, table_name"
        )
        return [TableRef(*row) for row in rows]

    def list_columns(self, table: TableRef) -> list[Column]:
        info = f"{quote_ident(table.catalog)}.information_schema.columns"
        rows = self._fetch(
            f"SELECT column_name, data_type FROM {info}"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (table.schema, table.name),
        )
        if not rows:
            raise ObjectNotFound(f"table {table.catalog}.{table.schema}.{table.name} not found")
        unique = self._unique_columns(table)
        return [Column(name, dtype, name in unique) for name, dtype in rows]

    def query_columns(self, sql: str) -> list[Column]:
        from snowflake.connector.constants import FIELD_ID_TO_NAME

        with self._cursor() as cur:
            # describe() compiles the query without running it.
            meta = cur.describe(_wrap(sql)) or []
        return [Column(m.name, FIELD_ID_TO_NAME.get(m.type_code, "UNKNOWN")) for m in meta]

    def table_query(self, table: TableRef) -> str:
        parts = (table.catalog, table.schema, table.name)
        return "SELECT * FROM " + ".".join(quote_ident(p) for p in parts)

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        batch_size = batch_size or self.capabilities.batch_size
        with self._cursor() as cur:
            cur.execute(_wrap(sql))
            schema = pa.schema([_arrow_field(m) for m in cur.description])
            for chunk in _chunks(cur, schema, batch_size):
                yield from chunk.to_batches(max_chunksize=batch_size)

    def _unique_columns(self, table: TableRef) -> set[str]:
        # Snowflake's information_schema has no key_column_usage; SHOW has the columns.
        name = ".".join(quote_ident(p) for p in (table.catalog, table.schema, table.name))
        by_constraint: dict[str, list[str]] = {}
        for kind in ("PRIMARY", "UNIQUE"):
            for row in self._fetch_dicts(f"SHOW {kind} KEYS IN TABLE {name}"):
                by_constraint.setdefault(f"{kind}:{row['constraint_name']}", []).append(
                    row["column_name"]
                )
        return {cols[0] for cols in by_constraint.values() if len(cols) == 1}

    def _cursor(self) -> Any:
        return _Cursor(self)

    def _fetch(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def _fetch_dicts(self, sql: str) -> list[dict[str, Any]]:
        with self._cursor() as cur:
            cur.execute(sql)
            names = [d.name.lower() for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


class _Cursor:
    """A cursor on a fresh connection, closed together, with errors typed."""

    def __init__(self, source: SnowflakeSource) -> None:
        self._source = source

    def __enter__(self) -> Any:
        self._conn = self._source._connect()
        return self._conn.cursor()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._conn.close()
        if exc is None:
            return
        import snowflake.connector

        if isinstance(exc, snowflake.connector.errors.ProgrammingError):
            raise InvalidQuery(_message(exc)) from exc
        if isinstance(exc, snowflake.connector.errors.DatabaseError):
            raise TransientError(_message(exc)) from exc


def _chunks(cur: Any, schema: pa.Schema, batch_size: int) -> Iterator[pa.Table]:
    fetch = getattr(cur, "fetch_arrow_batches", None)
    if fetch is not None:
        for table in fetch():
            yield _conform(table, schema)
        return
    # Cursors without Arrow support (older connectors, emulators) still fetchmany.
    names = schema.names
    while rows := cur.fetchmany(batch_size):
        columns = {n: [row[i] for row in rows] for i, n in enumerate(names)}
        yield pa.Table.from_pydict(columns, schema=schema)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    import pyarrow.compute as pc

    columns = []
    for column, field in zip(table.columns, schema, strict=True):
        if column.type != field.type:
            # Timestamps arrive in ns; dropping sub-microsecond digits is intended.
            safe = not pa.types.is_timestamp(field.type)
            column = pc.cast(column, field.type, safe=safe)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _arrow_field(meta: Any) -> pa.Field:
    from snowflake.connector.constants import FIELD_ID_TO_NAME

    kind = FIELD_ID_TO_NAME.get(meta.type_code, "")
    arrow: pa.DataType = pa.string()  # VARIANT, OBJECT, ARRAY travel as JSON text
    if kind == "FIXED":
        scale = meta.scale or 0
        # Integers are int64 like the connector's own Arrow output; decimals keep scale.
        arrow = pa.int64() if scale == 0 else pa.decimal128(meta.precision or 38, scale)
    elif kind == "REAL":
        arrow = pa.float64()
    elif kind == "BOOLEAN":
        arrow = pa.bool_()
    elif kind == "DATE":
        arrow = pa.date32()
    elif kind == "TIME":
        arrow = pa.time64("us")
    elif kind == "TIMESTAMP_NTZ":
        arrow = pa.timestamp("us")
    elif kind in ("TIMESTAMP_LTZ", "TIMESTAMP_TZ"):
        arrow = pa.timestamp("us", tz="UTC")
    elif kind == "BINARY":
        arrow = pa.binary()
    return pa.field(meta.name, arrow)


def _connect_kwargs(config: SnowflakeConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "account": config.account,
        "user": config.user,
        "warehouse": config.warehouse,
        "database": config.database,
        "application": "Reflow",
        "login_timeout": config.login_timeout_seconds,
        "session_parameters": {
            "STATEMENT_TIMEOUT_IN_SECONDS": config.statement_timeout_seconds,
            "QUERY_TAG": "reflow",
        },
    }
    if config.role:
        kwargs["role"] = config.role
    if config.schema_:
        kwargs["schema"] = config.schema_
    if config.use_keypair:
        kwargs["authenticator"] = "SNOWFLAKE_JWT"
        kwargs["private_key"] = _private_key_der(config)
    elif config.password is not None:
        kwargs["password"] = config.password.get_secret_value()
    if config.endpoint_url:
        url = urlsplit(config.endpoint_url)
        kwargs.update(protocol=url.scheme or "https", host=url.hostname)
        kwargs["port"] = url.port or (443 if kwargs["protocol"] == "https" else 80)
        check_server(url.hostname or "", kwargs["port"])
    return kwargs


def _private_key_der(config: SnowflakeConfig) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if config.private_key is None:
        raise TerminalError("use_keypair is true but no private_key was given")
    passphrase = config.private_key_passphrase
    try:
        key = serialization.load_pem_private_key(
            config.private_key.get_secret_value().encode(),
            password=passphrase.get_secret_value().encode() if passphrase else None,
        )
    except (ValueError, TypeError) as exc:
        raise TerminalError(f"the private key could not be read: {exc}") from exc
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _message(exc: Exception) -> str:
    return (getattr(exc, "msg", None) or str(exc)).strip() or type(exc).__name__


def _wrap(sql: str) -> str:
    return f"SELECT * FROM ({strip_statement(sql)}) AS _reflow_q"
