"""What the Postgres source and destination share: credentials and connecting."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, SecretStr

from reflow.connectors.base import ConnectorConfig
from reflow.connectors.errors import TerminalError, TransientError
from reflow.connectors.outbound import check_server


class PostgresConfig(ConnectorConfig):
    hostname: str = Field(
        title="Hostname",
        description="Host name or IP address of the server.",
        validation_alias=AliasChoices("hostname", "host"),
    )
    port: int = Field(5432, title="Port", description="TCP port of the server.", ge=1, le=65535)
    database: str = Field(title="Database", description="Database name.")
    user: str = Field(
        title="User",
        description="User to connect as.",
        validation_alias=AliasChoices("user", "username"),
    )
    password: SecretStr | None = Field(None, title="Password", description="The user's password.")
    sslmode: str | None = Field(
        None,
        title="SSL mode",
        description="libpq sslmode: disable, allow, prefer, require, verify-ca, verify-full.",
    )
    statement_timeout_seconds: int = Field(
        600,
        title="Statement timeout (s)",
        description="Longest a single statement may run.",
        ge=1,
    )


def connect(config: PostgresConfig, *, autocommit: bool = False, read_only: bool = False) -> Any:
    """A psycopg connection, with connection failures turned into typed errors."""
    import psycopg

    options = f"-c statement_timeout={config.statement_timeout_seconds * 1000} -c TimeZone=UTC"
    if read_only:
        options += " -c default_transaction_read_only=on"
    kwargs: dict[str, Any] = {
        "host": config.hostname,
        "port": config.port,
        "dbname": config.database,
        "user": config.user,
        "connect_timeout": 10,
        "options": options,
        "autocommit": autocommit,
        "application_name": "reflow",
    }
    if config.password is not None:
        kwargs["password"] = config.password.get_secret_value()
    if config.sslmode:
        kwargs["sslmode"] = config.sslmode
    kwargs.update(_pinned(config.hostname, config.port))
    try:
        return psycopg.connect(**kwargs)
    except psycopg.OperationalError as exc:
        message = str(exc).strip()
        if "authentication" in message or "does not exist" in message or "password" in message:
            raise TerminalError(message) from exc
        raise TransientError(message) from exc


def _pinned(hostname: str, port: int) -> dict[str, Any]:
    """libpq's ``hostaddr`` list: connect to the addresses the outbound policy judged
    (``host`` still names the server for TLS), one entry per address."""
    addresses = check_server(hostname, port)
    if not addresses:
        return {}
    return {"host": ",".join([hostname] * len(addresses)), "hostaddr": ",".join(addresses),
            "port": ",".join([str(port)] * len(addresses))}


def adbc_connect(config: PostgresConfig, *, read_only: bool = False) -> Any:
    """An ADBC (Arrow Database Connectivity) connection: Arrow batches in and out of
    PostgreSQL by binary ``COPY`` in C++, without Python rows or CSV on either side.
    Not in autocommit mode; the same session settings as ``connect``."""
    from urllib.parse import quote, urlencode

    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi

    options = f"-c statement_timeout={config.statement_timeout_seconds * 1000} -c TimeZone=UTC"
    if read_only:
        options += " -c default_transaction_read_only=on"
    params = {"connect_timeout": "10", "application_name": "reflow", "options": options}
    if config.sslmode:
        params["sslmode"] = config.sslmode
    pinned = _pinned(config.hostname, config.port)
    hosts = [f"{quote(config.hostname, safe='')}:{config.port}"]
    if pinned:  # libpq's multi-host URI: one host:port per judged address
        params["hostaddr"] = pinned["hostaddr"]
        hosts *= len(pinned["hostaddr"].split(","))
    password = f":{quote(config.password.get_secret_value(), safe='')}" if config.password else ""
    uri = (
        f"postgresql://{quote(config.user, safe='')}{password}@{','.join(hosts)}"
        f"/{quote(config.database, safe='')}?{urlencode(params, quote_via=quote)}"
    )
    try:
        return adbc_driver_postgresql.dbapi.connect(uri)
    except adbc_driver_manager.Error as exc:
        message = str(exc).strip()
        if "authentication" in message or "does not exist" in message or "password" in message:
            raise TerminalError(message) from exc
        raise TransientError(message) from exc


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_qualified(*parts: str) -> str:
    return ".".join(quote_ident(p) for p in parts)


def split_qualified(full_name: str) -> tuple[str, str]:
    """``schema.table`` -> (schema, table); a bare name is in ``public``."""
    schema, dot, table = full_name.partition(".")
    return (schema, table) if dot else ("public", schema)
