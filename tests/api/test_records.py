"""Record-level results: rejected (split batches), invalid, succeeded, count, export."""

from __future__ import annotations

import io

import httpx
import psycopg
import pyarrow.parquet as pq

from tests.api.syncing import col, connections, create_sync, model, records, rows, run


def _count(api: httpx.Client, run_id: int, **params: str) -> int:
    response = api.get(f"/sync_runs/{run_id}/records_count", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"][0]["record_count"]


def test_one_bad_row_among_1000_is_isolated_and_retried_next_run(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(f"""CREATE TABLE "{pg_schema}".people AS
        SELECT g AS pid, 'n' || g AS name FROM generate_series(1, 1000) g""")
    pg_conn.execute(f"""CREATE TABLE "{pg_schema}".target (id int PRIMARY KEY, name text,
        CONSTRAINT no_500 CHECK (id <> 500))""")
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.target", "upsert",
                          [col("pid", "id", key=True), col("name")])

    first = run(api, sync_id)
    assert (first["records_processed"], first["records_updated"], first["records_failed"]) == (
        1000, 999, 1)
    assert rows(pg_conn, f'SELECT count(*) FROM "{pg_schema}".target') == [(999,)]
    rejected = records(api, first["id"], status="rejected")
    assert len(rejected) == 1
    assert rejected[0]["identifier"] == "500"
    assert 'violates check constraint "no_500"' in rejected[0]["status_message"]
    assert rejected[0]["record_payload"] == {"id": 500, "name": "n500"}

    assert _count(api, first["id"]) == 1000
    assert _count(api, first["id"], status="succeeded") == 999
    assert _count(api, first["id"], status="rejected") == 1
    assert _count(api, first["id"], status="invalid") == 0
    page = api.get(f"/sync_runs/{first['id']}/records", params={"per_page": 100, "page": 10})
    body = page.json()
    assert body["pagination"]["total_records"] == 1000 and body["pagination"]["last_page"] == 10
    assert len(body["data"]) == 100 and body["pagination"]["next_page"] is None
    one = records(api, first["id"], primary_identifier="42")
    assert [(r["status"], r["operation"], r["record_payload"]) for r in one] == [
        ("succeeded", "upsert", {"id": 42, "name": "n42"})]
    assert one[0]["batch_started_at"] and one[0]["batch_completed_at"]
    assert records(api, first["id"], operation="delete") == []

    export = api.get(f"/sync_runs/{first['id']}/records_export", params={"status": "succeeded"})
    assert export.status_code == 200, export.text
    assert export.json()["status"] == "success"
    tables = []
    for url in export.json()["urls"]:
        download = httpx.get(url, timeout=30)  # the URL is the credential, as Census's are
        assert download.status_code == 200
        tables.append(pq.read_table(io.BytesIO(download.content)))
    assert sum(t.num_rows for t in tables) == 999
    assert set(tables[0].column_names) >= {"identifier", "status", "record_payload"}
    everything = api.get(f"/sync_runs/{first['id']}/records_export").json()["urls"]
    assert len(everything) == 2
    assert httpx.get(everything[0].rsplit("/", 2)[0] + "/x" * 2, timeout=30).status_code == 404

    # Still rejected: retried by key, rejected again.
    second = run(api, sync_id)
    assert (second["records_processed"], second["records_failed"]) == (1, 1)
    pg_conn.execute(f'ALTER TABLE "{pg_schema}".target DROP CONSTRAINT no_500')
    third = run(api, sync_id)
    assert (third["records_processed"], third["records_updated"], third["records_failed"]) == (
        1, 1, 0)
    assert rows(pg_conn, f'SELECT name FROM "{pg_schema}".target WHERE id = 500') == [("n500",)]
    assert run(api, sync_id)["records_processed"] == 0


def test_invalid_records_null_duplicate_and_uncastable(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(f"""CREATE TABLE "{pg_schema}".people AS
        SELECT * FROM (VALUES (1, '10'), (2, 'abc'), (NULL, '3'), (4, '4'), (4, '5'), (6, '6'))
        AS v(pid, score)""")
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".target (id int PRIMARY KEY, score int)')
    # Engine-side diff ("basic"): the in-warehouse store is another area's work.
    source_id, dest_id = connections(api, pg_database, sync_engine="basic")
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.target", "mirror",
                          [col("pid", "id", key=True), col("score")])

    first = run(api, sync_id)
    assert first["source_record_count"] == 6
    assert first["records_invalid"] == first["source_record_invalids"] == 4
    assert (first["records_processed"], first["records_updated"]) == (2, 2)
    assert dict(rows(pg_conn, f'SELECT id, score FROM "{pg_schema}".target')) == {1: 10, 6: 6}
    by_status = sorted((r["status"], r["identifier"]) for r in records(api, first["id"],
                                                                        status="invalid"))
    assert by_status == [("DUPLICATE", "4"), ("DUPLICATE", "4"), ("NULL", None), ("invalid", "2")]
    uncastable = records(api, first["id"], primary_identifier="2")[0]
    assert uncastable["status_message"] == "score: value 'abc' cannot be converted to integer"
    assert _count(api, first["id"], status="NULL") == 1
    assert _count(api, first["id"], status="DUPLICATE") == 2

    # A row that becomes uncastable is invalid, not removed: mirror does not delete it.
    pg_conn.execute(f"UPDATE \"{pg_schema}\".people SET score = 'oops' WHERE pid = 1")
    second = run(api, sync_id)
    assert second["source_record_deletes"] == 0
    assert dict(rows(pg_conn, f'SELECT id, score FROM "{pg_schema}".target')) == {1: 10, 6: 6}


def test_record_filters_are_validated(api: httpx.Client) -> None:
    for params, field in [({"status": "ok"}, "status"), ({"operation": "merge"}, "operation")]:
        response = api.get("/sync_runs/1/records", params=params)
        assert response.status_code == 400 and field in response.json()["message"]
    assert api.get("/sync_runs/99999999/records").status_code == 404
    assert api.get("/sync_runs/99999999/records_export").status_code == 404
