"""Concurrent first runs against a real PostgreSQL source create the bookkeeping
schema and tables at once; every one of them must get its bookkeeping, none an error
from the catalog (``pg_type`` unique violation, "already exists")."""

from __future__ import annotations

import threading
import uuid

import psycopg

from reflow.connectors._postgres import PostgresConfig
from reflow.connectors._postgres_bookkeeping import SCHEMA, PostgresBookkeeping
from tests.conftest import pg_credentials

THREADS = 8
ROUNDS = 5


def _first_runs_at_once(config: PostgresConfig, namespace: str) -> list[BaseException]:
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def first_run(sync_id: int) -> None:
        try:
            start.wait(timeout=30)
            bookkeeping = PostgresBookkeeping(config, sync_id % 2, namespace=namespace)
            try:
                bookkeeping.ensure_snapshot("bigint")
            finally:
                bookkeeping.conn.close()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=first_run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_concurrent_first_runs_all_get_their_bookkeeping(
    pg_conn: psycopg.Connection, pg_database: str
) -> None:
    config = PostgresConfig.model_validate(pg_credentials(pg_database))
    namespaces = [uuid.uuid4().hex[:12] for _ in range(ROUNDS)]
    try:
        for namespace in namespaces:  # fresh names each round: every round races
            assert _first_runs_at_once(config, namespace) == []
            tables = pg_conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
                (SCHEMA, f"r{namespace}_%")).fetchone()
            assert tables == (5,)  # sync_meta, and a snapshot and journal per sync
    finally:
        for namespace in namespaces:
            names = pg_conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
                (SCHEMA, f"r{namespace}_%")).fetchall()
            for (name,) in names:
                pg_conn.execute(f'DROP TABLE "{SCHEMA}"."{name}"')
