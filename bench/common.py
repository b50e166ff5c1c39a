"""What the benchmark's processes share: the database, the generated model, timing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}

#: The 10-column model: ints, floats, text, timestamps, a bool.
COLUMNS = {
    "id": "bigint",
    "account_id": "integer",
    "visits": "bigint",
    "score": "double precision",
    "balance": "double precision",
    "email": "text",
    "plan": "text",
    "created_at": "timestamptz",
    "seen_at": "timestamp",
    "active": "boolean",
}

GENERATE = """
INSERT INTO {table}
SELECT g, (g % 9973)::int, g * 7, g * 0.25, (g % 1000) * 1.5 - 300,
       'user' || g || '@example.com', (ARRAY['free', 'team', 'business'])[g % 3 + 1],
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       timestamp '2023-06-01 12:00:00' + (g % 86400) * interval '1 minute',
       g % 2 = 0
FROM generate_series({start}, {stop}) g
"""


def connect(database: str, *, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(**PG, dbname=database, autocommit=autocommit)


def dsn(database: str) -> str:
    return f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{database}"


def create_database() -> str:
    name = f"reflow_bench_{uuid.uuid4().hex[:8]}"
    with connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_table(conn: psycopg.Connection, table: str, *, primary_key: bool = True) -> None:
    cols = ", ".join(f"{name} {dtype}" for name, dtype in COLUMNS.items())
    pk = ", PRIMARY KEY (id)" if primary_key else ""
    conn.execute(f"CREATE TABLE {table} ({cols}{pk})")


def generate(conn: psycopg.Connection, table: str, rows: int) -> None:
    create_table(conn, table)
    conn.execute(GENERATE.format(table=table, start=1, stop=rows))
    conn.execute(f"VACUUM ANALYZE {table}")


@contextmanager
def timed(out: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    out[name] = time.perf_counter() - start
