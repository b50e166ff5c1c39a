"""Every row a run does not deliver is counted: a value its field cannot hold makes the
row invalid, in the run's ``records_invalid`` and in ``/metrics``; a whole numeric value
(``6.00``) goes into an integer field as PostgreSQL itself would cast it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.api.conftest import Server
from tests.api.polling import wait_until
from tests.api.syncing import col, connections, create_sync, model, records, rows, run


def _invalid_metric(server: Server) -> float:
    text = httpx.get(server.base_url + "/metrics", timeout=30).text
    match = re.search(r'^reflow_records_total\{outcome="invalid"\} (\S+)$', text, re.M)
    if match is None:
        match = re.search(r'^reflow_records\{outcome="invalid"\} (\S+)$', text, re.M)
    assert match is not None, text
    return float(match.group(1))


@pytest.mark.parametrize("sync_engine", ["advanced", "basic"])
def test_uncastable_rows_are_counted_invalid(
    server: Server, api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str,
    pg_database: str, sync_engine: str,
) -> None:
    table = f'"{pg_schema}".counted_{sync_engine}'
    pg_conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, qty integer)")
    source_id, dest_id = connections(api, pg_database, sync_engine=sync_engine)
    # 20 rows: ids 1..19 carry a fraction (6.5 cannot be an integer), id 20 is whole (6.00).
    model_id = model(api, source_id,
                     "SELECT g AS id, CASE WHEN g = 20 THEN 6.00 ELSE g + 0.5 END::numeric AS qty"
                     " FROM generate_series(1, 20) g")
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.counted_{sync_engine}",
                          "upsert", [col("id", key=True), col("qty")])
    before = _invalid_metric(server)
    result = run(api, sync_id)
    assert result["records_updated"] == 1, result
    assert result["records_invalid"] == 19, result
    assert rows(pg_conn, f"SELECT id, qty FROM {table}") == [(20, 6)]
    invalid = records(api, result["id"], status="invalid")
    assert len(invalid) == 19
    assert "qty" in invalid[0]["status_message"] and "whole" in invalid[0]["status_message"]
    assert _invalid_metric(server) - before == 19


def _bookkeeping_tables(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'reflow_bookkeeping'").fetchall()}


def test_a_deleted_sync_leaves_no_snapshot_behind(
    server: Server, api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str,
    pg_database: str,
) -> None:
    """In-warehouse bookkeeping tables are dropped and the engine-side file removed."""
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".kept (id integer PRIMARY KEY, qty integer)')
    target = f"{pg_schema}.kept"
    sql = "SELECT g AS id, g AS qty FROM generate_series(1, 5) g"
    warehouse_source, dest_id = connections(api, pg_database, sync_engine="advanced")
    in_warehouse = create_sync(api, warehouse_source, model(api, warehouse_source, sql), dest_id,
                               target, "upsert", [col("id", key=True), col("qty")])
    basic_source, _ = connections(api, pg_database, sync_engine="basic")
    engine_side = create_sync(api, basic_source, model(api, basic_source, sql), dest_id,
                              target, "upsert", [col("id", key=True), col("qty")])
    before = _bookkeeping_tables(pg_conn)
    run(api, in_warehouse)
    run(api, engine_side)
    made = {t for t in _bookkeeping_tables(pg_conn) - before
            if t.endswith((f"sync_{in_warehouse}_snapshot", f"sync_{in_warehouse}_journal"))}
    assert made, "the in-warehouse run keeps its snapshot in the source"
    snapshot_file = Path(server.env["REFLOW_HOME"]) / "snapshots" / f"sync_{engine_side}.duckdb"
    assert snapshot_file.exists()

    for sync_id in (in_warehouse, engine_side):
        assert api.delete(f"/syncs/{sync_id}").status_code == 200
    wait_until(lambda: not made & _bookkeeping_tables(pg_conn), "bookkeeping tables dropped")
    assert not snapshot_file.exists()
