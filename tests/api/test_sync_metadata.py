"""A sync_metadata mapping (the run id differs every run) travels with each record
but does not make an unchanged row look changed."""

from __future__ import annotations

import httpx
import psycopg

from tests.api.syncing import col, connections, create_sync, model, rows, run


def test_sync_metadata_does_not_count_as_a_change(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(
        f'CREATE TABLE "{pg_schema}".src AS SELECT g AS id FROM generate_series(1, 5) g'
    )
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".dst (id int PRIMARY KEY, run_id bigint)')
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT id FROM "{pg_schema}".src')
    metadata = {"from": {"type": "sync_metadata", "data": "sync_run_id"}, "to": "run_id",
                "is_primary_identifier": False}
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.dst", "upsert",
                          [col("id", key=True), metadata])
    first = run(api, sync_id)
    assert first["records_processed"] == 5
    assert {r[0] for r in rows(pg_conn, f'SELECT run_id FROM "{pg_schema}".dst')} == {first["id"]}
    second = run(api, sync_id)
    assert second["records_processed"] == 0
    pg_conn.execute(f'INSERT INTO "{pg_schema}".src VALUES (6)')
    third = run(api, sync_id)
    assert third["records_processed"] == 1
    assert rows(pg_conn, f'SELECT run_id FROM "{pg_schema}".dst WHERE id = 6') == [(third["id"],)]
