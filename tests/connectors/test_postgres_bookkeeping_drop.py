"""Deleting a sync drops its bookkeeping tables while a run of it may still be going.
The run reads its model joined to the snapshot in one long transaction and writes
acknowledged keys on another connection: a DROP that waited in the lock queue would
stall that write behind it, and the run could never end the read the DROP waits for.
The drop must give up quickly and be tried again, on a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import psycopg
import pyarrow as pa
import pytest

from reflow.connectors._postgres import PostgresConfig
from reflow.connectors._postgres_bookkeeping import PostgresBookkeeping, drop, table_names
from reflow.connectors.sources.postgres import PostgresSource
from reflow.services import sync_cleanup
from tests.conftest import pg_credentials

SYNC_ID = 7


@pytest.fixture
def namespace() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def bookkeeping(pg_database: str, namespace: str) -> Iterator[PostgresBookkeeping]:
    config = PostgresConfig.model_validate(pg_credentials(pg_database))
    keeping = PostgresBookkeeping(config, SYNC_ID, namespace=namespace)
    keeping.ensure_snapshot("bigint")
    yield keeping
    keeping.conn.close()
    drop(config, SYNC_ID, namespace=namespace)


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


def test_a_drop_never_stalls_the_run_that_holds_the_snapshot(
    bookkeeping: PostgresBookkeeping, pg_database: str, namespace: str
) -> None:
    reader = psycopg.connect(**_dsn(pg_database))  # the run's model read, still open
    reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    # It holds the journal, the table the run writes acknowledged keys to next.
    reader.execute(f"SELECT count(*) FROM {bookkeeping.journal}").fetchone()
    dropped: list[BaseException | None] = []

    def drop_now() -> None:
        try:
            drop(bookkeeping.config, SYNC_ID, namespace=namespace)
            dropped.append(None)
        except BaseException as exc:  # reported below
            dropped.append(exc)

    dropper = threading.Thread(target=drop_now)
    dropper.start()
    dropper.join(timeout=0.3)  # the DROP is now queued behind the reader
    writer = threading.Thread(target=bookkeeping.commit,
                              args=(pa.array([1, 2, 3]), pa.array([10, 20, 30])))
    writer.start()
    writer.join(timeout=30)
    dropper.join(timeout=30)
    try:
        assert not writer.is_alive(), "the run's write waits behind the DROP: deadlock"
        assert len(dropped) == 1 and isinstance(dropped[0], psycopg.errors.LockNotAvailable)
        assert _exists(reader, bookkeeping.journal)  # nothing dropped while held
    finally:
        reader.close()


def test_the_drop_is_tried_again_until_the_run_lets_go(
    bookkeeping: PostgresBookkeeping, pg_database: str, namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = psycopg.connect(**_dsn(pg_database), autocommit=True)
    reader.execute("BEGIN")
    reader.execute(f"SELECT count(*) FROM {bookkeeping.snapshot}").fetchone()
    connector = PostgresSource(bookkeeping.config)
    monkeypatch.setattr(sync_cleanup.sources, "connector", lambda *_a, **_k: connector)
    runtime = SimpleNamespace(vault=None, installation_id=lambda: namespace)
    cleaner = threading.Thread(target=sync_cleanup._drop_bookkeeping,
                               args=(runtime, SYNC_ID, object(), (0.5,) * 40))
    cleaner.start()
    cleaner.join(timeout=3)  # a few attempts fail on the lock
    assert cleaner.is_alive() and _exists(reader, bookkeeping.snapshot)
    reader.execute("COMMIT")  # the run ends
    cleaner.join(timeout=30)
    snapshot, journal, _ = table_names(SYNC_ID, namespace)
    try:
        assert not cleaner.is_alive()
        assert not _exists(reader, snapshot) and not _exists(reader, journal)
    finally:
        reader.close()


def _dsn(database: str) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": database}
