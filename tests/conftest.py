"""Shared fixtures. Tests use the real services this machine runs; a service that is
down fails the run loudly (see ``require_service``), it never skips."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

#: Tests run production-like setups (PostgreSQL state) against loopback servers, which the
#: outbound address policy refuses in production; the suite allows loopback explicitly.
#: Servers started by tests inherit it. Tests of the policy itself set their own.
LOOPBACK_ALLOW = "127.0.0.0/8,::1"
os.environ.setdefault("REFLOW_OUTBOUND_ALLOW", LOOPBACK_ALLOW)

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_USER = "postgres"


def require_service(name: str, port: int, host: str = "127.0.0.1") -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{name} is not reachable on {host}:{port} ({exc}); see shared/services.md")


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def pg_credentials(database: str) -> dict[str, Any]:
    """Census-shaped credentials for the local PostgreSQL."""
    return {
        "hostname": PG_HOST,
        "port": PG_PORT,
        "user": PG_ADMIN_USER,
        "password": "unused-trust-auth",
        "database": database,
    }


def _admin() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, dbname="postgres", autocommit=True
    )


def create_pg_database(prefix: str = "reflow_test") -> str:
    require_service("PostgreSQL", PG_PORT)
    name = unique_name(prefix)
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One scratch PostgreSQL database for the whole session (warehouse side)."""
    name = create_pg_database()
    yield name
    drop_pg_database(name)


@pytest.fixture
def pg_conn(pg_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, dbname=pg_database, autocommit=True
    ) as conn:
        yield conn


@pytest.fixture
def pg_schema(pg_conn: psycopg.Connection) -> Iterator[str]:
    """A fresh schema per test, dropped afterwards."""
    name = unique_name("s")
    pg_conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    pg_conn.execute(f'DROP SCHEMA "{name}" CASCADE')
