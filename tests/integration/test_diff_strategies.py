"""Engine-side and in-warehouse change detection give the same runs.

One scenario (first run, changed/new/deleted rows, null and duplicate keys, a
mapping change, a fixed duplicate) runs through two syncs that differ only in their
source's ``sync_engine``; after every step the run counters, the invalid records and
the destination tables must be equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from reflow.config import Settings
from reflow.db.tables import SyncRun, SyncRunRecord
from reflow.jobs.planning import execute
from reflow.runtime import Runtime
from reflow.services import bootstrap, destinations, models, runs, sources, syncs
from tests.conftest import (
    PG_ADMIN_USER,
    PG_HOST,
    PG_PORT,
    create_pg_database,
    drop_pg_database,
    pg_credentials,
)

COUNTERS = (
    "status", "error_message", "full_sync", "source_record_count", "source_record_invalids",
    "source_record_updates", "source_record_deletes", "records_processed", "records_updated",
    "records_failed",
)


@pytest.fixture
def database() -> Iterator[str]:
    # A database per test: bookkeeping tables are named by sync id, which restarts
    # with every fresh state store.
    name = create_pg_database("reflow_diff")
    yield name
    drop_pg_database(name)


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, dbname=database,
                         autocommit=True) as c:
        yield c


def _seed(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE people (id int, email text, score float8, seen timestamptz, active bool)"
    )
    conn.execute(
        "INSERT INTO people SELECT g, 'p' || g || '@example.com', g * 1.5,"
        " timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour', g % 2 = 0"
        " FROM generate_series(1, 200) g"
    )
    conn.execute(
        "INSERT INTO people VALUES (NULL, 'nokey@example.com', 1, now(), true),"
        " (900, 'dup1@example.com', 2, NULL, NULL), (900, 'dup2@example.com', 3, NULL, false)"
    )
    for table in ("dest_basic", "dest_advanced"):
        conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, email text, score float8,"
            " seen timestamptz, active bool, cohort text)"
        )


def _mappings(cohort: str, with_score: bool = True) -> list[dict[str, Any]]:
    def col(src: str, dst: str, key: bool = False) -> dict[str, Any]:
        return {"from": {"type": "column", "data": src}, "to": dst, "is_primary_identifier": key}

    out = [col("id", "id", key=True), col("email", "email"), col("seen", "seen"),
           col("active", "active")]
    if with_score:
        out.append(col("score", "score"))
    out.append({"from": {"type": "constant_value", "data": {"value": cohort, "basic_type": "text"}},
                "to": "cohort", "is_primary_identifier": False})
    return out


class Harness:
    def __init__(self, home: Path, database: str, operation: str) -> None:
        self.rt = Runtime.from_settings(Settings(home=home, secret_key="test-secret-key"))
        self.workspace_id = bootstrap.initialize(self.rt.engine).workspace_id
        self.sync_ids = {
            engine: self._create(database, engine, f"public.dest_{engine}", operation)
            for engine in ("basic", "advanced")
        }

    def _create(self, database: str, engine: str, target: str, operation: str) -> int:
        with self.rt.session() as session:
            kw = {"workspace_id": self.workspace_id, "vault": self.rt.vault}
            source = sources.create(session, type="postgres", sync_engine=engine,
                                    credentials=pg_credentials(database), **kw)
            model = models.create(session, source=source, vault=self.rt.vault, name="People",
                                  query="SELECT * FROM people")
            dest = destinations.create(session, type="postgres",
                                       credentials=pg_credentials(database), **kw)
            sync = syncs.create(session, body={
                "operation": operation,
                "source_attributes": {"connection_id": source.id,
                                      "object": {"type": "model", "id": model.id}},
                "destination_attributes": {"connection_id": dest.id, "object": target},
                "mappings": _mappings("first"),
            }, **kw)
            assert sync is not None
            return sync.id

    def set_mappings(self, mappings: list[dict[str, Any]]) -> None:
        with self.rt.session() as session:
            for sync_id in self.sync_ids.values():
                sync = syncs.get(session, workspace_id=self.workspace_id, sync_id=sync_id)
                syncs.update(session, sync=sync, vault=self.rt.vault, body={"mappings": mappings})

    def run_both(self) -> dict[str, dict[str, Any]]:
        return {engine: self._run(sync_id) for engine, sync_id in self.sync_ids.items()}

    def _run(self, sync_id: int) -> dict[str, Any]:
        with self.rt.session() as session:
            sync = syncs.get(session, workspace_id=self.workspace_id, sync_id=sync_id)
            run_id = runs.trigger(session, sync=sync).id
        execute(self.rt, run_id)
        with self.rt.session() as session:
            run = session.get(SyncRun, run_id)
            assert run is not None
            counters = {name: getattr(run, name) for name in COUNTERS}
            records = session.execute(
                select(SyncRunRecord.identifier, SyncRunRecord.status_message)
                .where(SyncRunRecord.run_id == run_id)
            ).all()
        counters["invalid_records"] = sorted(map(tuple, records), key=repr)
        return counters


def _table(conn: psycopg.Connection, name: str) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()


def _assert_same(h: Harness, conn: psycopg.Connection, result: dict[str, dict[str, Any]]) -> None:
    assert result["basic"]["status"] == "completed", result["basic"]
    assert result["advanced"] == result["basic"]
    assert _table(conn, "dest_advanced") == _table(conn, "dest_basic")


@pytest.mark.parametrize("operation", ["upsert", "mirror"])
def test_both_strategies_agree(
    tmp_path: Path, database: str, conn: psycopg.Connection, operation: str
) -> None:
    _seed(conn)
    h = Harness(tmp_path / "home", database, operation)

    first = h.run_both()
    _assert_same(h, conn, first)
    assert first["advanced"]["source_record_count"] == 203
    assert first["advanced"]["source_record_invalids"] == 3
    assert first["advanced"]["records_updated"] == 200
    # the strategies really were different ones
    tables = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'reflow_bookkeeping'"
    ).fetchall()
    prefix = f"r{h.rt.installation_id()}_"
    assert (f"{prefix}sync_{h.sync_ids['advanced']}_snapshot",) in tables
    assert (f"{prefix}sync_{h.sync_ids['basic']}_snapshot",) not in tables
    snapshots = h.rt.settings.resolved_snapshot_dir
    assert (snapshots / f"sync_{h.sync_ids['basic']}.duckdb").exists()
    assert not (snapshots / f"sync_{h.sync_ids['advanced']}.duckdb").exists()

    conn.execute("UPDATE people SET email = 'changed' || id WHERE id BETWEEN 10 AND 19")
    conn.execute("UPDATE people SET active = NULL WHERE id = 30")
    conn.execute("INSERT INTO people SELECT g, 'new' || g, 0, NULL, true"
                 " FROM generate_series(301, 305) g")
    conn.execute("DELETE FROM people WHERE id IN (50, 51, 52)")
    second = h.run_both()
    _assert_same(h, conn, second)
    assert second["advanced"]["source_record_updates"] == 16
    assert second["advanced"]["source_record_deletes"] == (3 if operation == "mirror" else 0)

    unchanged = h.run_both()
    _assert_same(h, conn, unchanged)
    assert unchanged["advanced"]["records_processed"] == 0

    h.set_mappings(_mappings("second", with_score=False))
    remapped = h.run_both()
    _assert_same(h, conn, remapped)
    assert remapped["advanced"]["full_sync"] is True

    conn.execute("DELETE FROM people WHERE email = 'dup2@example.com'")
    fixed = h.run_both()
    _assert_same(h, conn, fixed)
    assert fixed["advanced"]["source_record_updates"] == 1
    assert fixed["advanced"]["source_record_invalids"] == 1
