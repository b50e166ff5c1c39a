"""Run control: current_step, cancel at a batch boundary, validate_only,
force_full_sync, and a SIGKILL in the middle of a run."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.api.conftest import (
    Server,
    _wait_healthy,
    free_port,
    start_server,
    stop_server,
    wait_for_run,
)
from tests.api.syncing import col, connections, create_sync, model, rows, run, start, sync_body


def _slow_target(conn: psycopg.Connection, schema: str, sleep: float) -> str:
    """A destination table whose every write statement takes ``sleep`` seconds."""
    conn.execute(f'CREATE TABLE "{schema}".target (id int PRIMARY KEY, name text)')
    conn.execute(f"""CREATE FUNCTION "{schema}".slow() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep({sleep}); RETURN NULL; END $$""")
    conn.execute(f"""CREATE TRIGGER slow AFTER INSERT ON "{schema}".target
        FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".slow()""")
    return f"{schema}.target"


def _people(conn: psycopg.Connection, schema: str, n: int) -> None:
    conn.execute(f"""CREATE TABLE "{schema}".people AS
        SELECT g AS pid, 'n' || g AS name FROM generate_series(1, {n}) g""")


def _wait_delivering(api: httpx.Client, run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = api.get(f"/sync_runs/{run_id}").json()["data"]
        if current["status"] == "working" and (current["records_processed"] or 0) > 0:
            return current
        assert current["status"] in ("queued", "working"), current
        time.sleep(0.05)
    raise AssertionError("run never started delivering")


def _count(conn: psycopg.Connection, schema: str) -> int:
    return rows(conn, f'SELECT count(*) FROM "{schema}".target')[0][0]


def test_cancel_stops_at_a_batch_boundary_with_a_consistent_snapshot(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, 600)
    obj = _slow_target(pg_conn, pg_schema, 0.2)
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    sync_id = create_sync(api, source_id, model_id, dest_id, obj, "upsert",
                          [col("pid", "id", key=True), col("name")],
                          advanced_configuration={"batch_size": 50})
    run_id = start(api, sync_id)
    working = _wait_delivering(api, run_id)
    assert working["current_step"] == "Loading data into destination service"
    assert working["completed_at"] is None
    early = api.get(f"/sync_runs/{run_id}/records_export")
    assert early.status_code == 425 and early.json()["status"] == "error"

    cancel = api.post(f"/sync_runs/{run_id}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    canceled = wait_for_run(api, run_id)
    assert canceled["status"] == "failed" and canceled["canceled"] is True
    assert canceled["current_step"] is None
    delivered = canceled["records_updated"]
    assert 0 < delivered < 600
    assert _count(pg_conn, pg_schema) == delivered

    # The snapshot holds exactly what was acknowledged: the next run sends the rest.
    pg_conn.execute(f'DROP TRIGGER slow ON "{pg_schema}".target')
    rest = run(api, sync_id)
    assert rest["source_record_updates"] == rest["records_updated"] == 600 - delivered
    assert _count(pg_conn, pg_schema) == 600


def test_validate_only_stores_nothing(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, 1)
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".target (id int PRIMARY KEY, name text)')
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    body = sync_body(source_id, model_id, dest_id, f"{pg_schema}.target", "upsert",
                     [col("pid", "id", key=True), col("name")], validate_only=True)
    before = api.get("/syncs").json()["pagination"]["total_records"]
    valid = api.post("/syncs", json=body)
    assert valid.status_code == 200 and valid.json()["status"] == "success"
    invalid = api.post("/syncs", json={**body, "mappings": [col("pid", "nope", key=True)]})
    assert invalid.status_code == 400
    assert "mappings[0].to" in invalid.json()["message"]
    assert api.get("/syncs").json()["pagination"]["total_records"] == before


def test_force_full_sync_as_query_or_body(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, 5)
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".target (id int PRIMARY KEY, name text)')
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.target", "upsert",
                          [col("pid", "id", key=True), col("name")])
    run(api, sync_id)
    assert run(api, sync_id)["records_processed"] == 0
    by_body = run(api, sync_id, force_full_sync=True)
    assert by_body["full_sync"] is True and by_body["records_processed"] == 5
    response = api.post(f"/syncs/{sync_id}/trigger", params={"force_full_sync": "true"})
    by_query = wait_for_run(api, response.json()["data"]["sync_run_id"])
    assert by_query["full_sync"] is True and by_query["records_processed"] == 5
    bad = api.post(f"/syncs/{sync_id}/trigger", json={"force_full_sync": "yes"})
    assert bad.status_code == 400 and "force_full_sync" in bad.json()["message"]


def _restart(server: Server) -> Server:
    """``reflow serve`` again on the same REFLOW_HOME (no init: the store exists)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reflow.cli", "serve", "--port", str(port)],
        env=server.env, stdout=server.log_path.open("ab"), stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    _wait_healthy(base_url, process, server.log_path)
    return Server(server.store, base_url, server.env, server.workspace_token,
                  server.organization_token, process, server.log_path)


def test_sigkill_mid_run_then_restart_delivers_exactly(
    pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    n = 1000
    _people(pg_conn, pg_schema, n)
    obj = _slow_target(pg_conn, pg_schema, 0.1)
    home = Path(tempfile.mkdtemp(prefix="reflow-crash-"))
    server = start_server("sqlite", home, {"REFLOW_BATCH_SIZE": "50"})
    try:
        with server.client() as api:
            source_id, dest_id = connections(api, pg_database)
            model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
            sync_id = create_sync(api, source_id, model_id, dest_id, obj, "upsert",
                                  [col("pid", "id", key=True), col("name")])
            crashed_id = start(api, sync_id)
            _wait_delivering(api, crashed_id)
        server.process.kill()
        server.process.wait(timeout=30)
        at_kill = _count(pg_conn, pg_schema)
        assert 0 < at_kill < n
        pg_conn.execute(f"UPDATE \"{pg_schema}\".people SET name = 'new' WHERE pid = {n}")

        server = _restart(server)
        with server.client() as api:
            orphan = api.get(f"/sync_runs/{crashed_id}").json()["data"]
            assert orphan["status"] == "failed" and orphan["completed_at"] is not None
            assert "interrupted" in orphan["error_message"]
            pg_conn.execute(f'DROP TRIGGER slow ON "{pg_schema}".target')
            again = run(api, sync_id)
        # Destination exact: every source row, once, with its current values.
        assert rows(pg_conn, f"""SELECT count(*), count(DISTINCT id),
            bool_and(name = CASE WHEN id = {n} THEN 'new' ELSE 'n' || id END)
            FROM "{pg_schema}".target""") == [(n, n, True)]
        # Counters: what the old snapshot did not hold is resent (at most one batch twice).
        assert again["source_record_count"] == n
        assert again["records_processed"] == again["source_record_updates"]
        assert again["records_updated"] == again["records_processed"]
        assert again["records_failed"] == 0 and again["records_invalid"] == 0
        assert n - at_kill <= again["source_record_updates"] < n
    finally:
        if server.process.poll() is None:
            stop_server(server)
