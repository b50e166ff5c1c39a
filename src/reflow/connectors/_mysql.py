"""What the MySQL source and destination share: the server's credentials and the
PyMySQL connection arguments they imply."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import SecretStr

from reflow.connectors.outbound import check_server

PORT = 3306


class MySQLServer(Protocol):
    hostname: str
    port: int
    database: str
    user: str
    password: SecretStr | None


def connect_kwargs(config: MySQLServer) -> dict[str, Any]:
    """``pymysql.connect`` arguments for the configured server and database, in utf8mb4;
    the host judged by the outbound address policy first (not pinned: PyMySQL verifies
    TLS against ``host``)."""
    check_server(config.hostname, config.port)
    return {
        "host": config.hostname,
        "port": config.port,
        "user": config.user,
        "password": config.password.get_secret_value() if config.password else "",
        "database": config.database,
        "charset": "utf8mb4",
        "connect_timeout": 10,
    }
