"""The PostgreSQL writer's pipelined path, through the engine's delivery
(``engine.writing``) with a real PostgreSQL target, a real snapshot store and state
store.

Batches are cut by the test (ids 1-2, 3-4). Where ordering matters, the test holds a
row of batch 1 in an uncommitted transaction of its own, so batch 1 waits for it;
every outcome below is decided by logic, never by timing: batch 2 is committed while
batch 1 waits; a failure of batch 1 never lets its records into the snapshot,
whatever batch 2 does; records rejected in batch 1 are its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations import postgres
from reflow.connectors.destinations.postgres import PostgresDestination
from reflow.connectors.errors import TerminalError
from reflow.engine.records import SucceededLog
from reflow.engine.snapshot import SnapshotStore
from reflow.engine.writing import Delivery
from reflow.jobs.progress import StateReporter
from tests.conftest import pg_credentials
from tests.connectors.test_http_pipelining import batch, run_batches, snapshot_keys
from tests.support.delivery import working_run

#: How long the test holds batch 1's row waiting for batch 2 to be committed: only
#: reached when the writer has a barrier per batch (the test then fails).
HOLD_SECONDS = 10.0


@pytest.fixture
def target(pg_conn: psycopg.Connection, pg_schema: str) -> str:
    table = f'"{pg_schema}".people'
    pg_conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text)")
    return table


@pytest.fixture
def delivery(tmp_path: Path, pg_database: str, pg_schema: str, target: str,
             ) -> Iterator[Delivery]:
    runtime, sync_id, run_id = working_run(tmp_path / "home", "postgres", target)
    config = PostgresDestination.config_model.model_validate(pg_credentials(pg_database))
    writer = PostgresDestination(config).open_writer(
        WriteContext(sync_id, run_id, f"{pg_schema}.people", "id", ("id", "name")))
    store = SnapshotStore(tmp_path / "snap.duckdb")
    yield Delivery(StateReporter(runtime, run_id), run_id, writer, store, threading.Event(), {},
                   SucceededLog(runtime.settings.home, run_id))
    store.close()


def rows(conn: psycopg.Connection, table: str) -> dict[int, str]:
    return dict(conn.execute(f"SELECT id, name FROM {table}").fetchall())  # type: ignore[arg-type]


def test_the_writer_keeps_two_batches_in_flight(delivery: Delivery) -> None:
    assert delivery.writer.pipeline_depth == postgres.CONNECTIONS - 1 == 1


def test_batch_2_is_committed_while_batch_1_waits(
    delivery: Delivery, pg_database: str, target: str,
) -> None:
    credentials = pg_credentials(pg_database)
    connect = {"host": credentials["hostname"], "port": credentials["port"],
               "user": credentials["user"], "dbname": pg_database}
    holder = psycopg.connect(**connect)  # not autocommit: its insert stays uncommitted
    holder.execute(f"INSERT INTO {target} VALUES (1, 'held')")
    seen: list[bool] = []

    def release_when_batch_2_is_in() -> None:
        with psycopg.connect(**connect, autocommit=True) as watcher:
            deadline = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < deadline and not set(rows(watcher, target)) >= {3, 4}:
                time.sleep(0.02)
            seen.append(set(rows(watcher, target)) >= {3, 4})
        holder.rollback()  # batch 1's insert of id 1 may go on now

    releaser = threading.Thread(target=release_when_batch_2_is_in)
    releaser.start()
    try:
        run_batches(delivery, batch(1, 2), batch(3, 4))
    finally:
        releaser.join()
        holder.close()
    assert seen == [True]  # batch 2 was committed while batch 1 waited on id 1
    with psycopg.connect(**connect, autocommit=True) as conn:
        assert rows(conn, target) == {1: "p1", 2: "p2", 3: "p3", 4: "p4"}
    assert snapshot_keys(delivery) == {"1", "2", "3", "4"}


def test_a_failure_in_batch_1_never_acknowledges_it_while_batch_2_succeeds(
    delivery: Delivery, pg_conn: psycopg.Connection, target: str,
) -> None:
    """Batch 1 fails for good (a trigger refuses id 1 with a permission error, which
    no retry cures); batch 2, in flight beside it, commits and is acknowledged."""
    pg_conn.execute("""
        CREATE FUNCTION refuse_1() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.id = 1 THEN RAISE EXCEPTION 'id 1 is not yours' USING ERRCODE = '42501'; END IF;
          RETURN NEW;
        END $$""")
    pg_conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {target}"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_1()")
    try:
        with pytest.raises(TerminalError, match="id 1 is not yours"):
            run_batches(delivery, batch(1, 2), batch(3, 4))
        assert rows(pg_conn, target) == {3: "p3", 4: "p4"}
        assert snapshot_keys(delivery) == {"3", "4"}
    finally:
        pg_conn.execute(f"DROP TRIGGER refuse ON {target}")
        pg_conn.execute("DROP FUNCTION refuse_1()")


def test_records_rejected_in_batch_1_are_its_own_while_batch_2_is_accepted(
    delivery: Delivery, pg_conn: psycopg.Connection, target: str,
) -> None:
    """A value the target refuses (a check constraint) rejects batch 1, which is
    halved until the record is isolated; batch 2 is accepted whole."""
    pg_conn.execute(f"ALTER TABLE {target} ADD CONSTRAINT not_p2 CHECK (name <> 'p2')")
    run_batches(delivery, batch(1, 2), batch(3, 4))
    assert rows(pg_conn, target) == {1: "p1", 3: "p3", 4: "p4"}
    assert snapshot_keys(delivery) == {"1", "3", "4"}
    assert delivery.stats.rejected == 1
    assert delivery.stats.accepted == 3
