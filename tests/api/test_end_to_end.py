"""What a user does: source, model, destination, upsert sync, trigger, poll, change
rows, trigger again — through the real API against real PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api.conftest import wait_for_run
from tests.conftest import pg_credentials


def _seed(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(
        f'CREATE TABLE "{schema}".customers (customer_id int, email text, name text, score float8)'
    )
    conn.execute(
        f"""INSERT INTO "{schema}".customers
            SELECT g, 'user' || g || '@example.com', 'User ' || g, g * 0.5
            FROM generate_series(1, 1000) g"""
    )
    # one null key and a duplicated key: three invalid rows, never sent
    conn.execute(
        f"""INSERT INTO "{schema}".customers VALUES
            (NULL, 'nokey@example.com', 'No Key', 1),
            (5000, 'dup1@example.com', 'Dup One', 2),
            (5000, 'dup2@example.com', 'Dup Two', 3)"""
    )
    conn.execute(
        f'CREATE TABLE "{schema}".crm_contacts (id bigint PRIMARY KEY, email text,'
        " full_name text, score float8, cohort text)"
    )


def _create_sync(api: httpx.Client, database: str, schema: str) -> int:
    source = api.post("/sources", json={"connection": {
        "type": "postgres", "name": "Warehouse", "credentials": pg_credentials(database)}})
    assert source.status_code == 201, source.text
    assert source.json()["status"] == "created"
    source_data = source.json()["data"]
    assert source_data["last_test_succeeded"] is True
    assert "password" not in source_data["connection_details"]

    model = api.post(f"/sources/{source_data['id']}/models", json={
        "name": "Customers", "query": f'SELECT * FROM "{schema}".customers'})
    assert model.status_code == 201, model.text
    assert [c["name"] for c in model.json()["data"]["columns"]] == [
        "customer_id", "email", "name", "score"]

    destination = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "name": "CRM", "credentials": pg_credentials(database)}})
    assert destination.status_code == 201, destination.text
    dest_id = destination.json()["data"]["id"]
    objects = api.get(f"/destinations/{dest_id}/objects", params={"per_page": 100}).json()
    names = [o["full_name"] for o in objects["data"]]
    assert f"{schema}.crm_contacts" in names

    sync = api.post("/syncs", json={
        "label": "Customers to CRM",
        "operation": "upsert",
        "source_attributes": {"connection_id": source_data["id"],
                              "object": {"type": "model", "id": model.json()["data"]["id"]}},
        "destination_attributes": {"connection_id": dest_id, "object": f"{schema}.crm_contacts"},
        "mappings": [
            {"from": {"type": "column", "data": "customer_id"}, "to": "id",
             "is_primary_identifier": True},
            {"from": {"type": "column", "data": "email"}, "to": "email"},
            {"from": {"type": "column", "data": "name"}, "to": "full_name"},
            {"from": {"type": "column", "data": "score"}, "to": "score"},
            {"from": {"type": "constant_value",
                      "data": {"value": "cohort_1", "basic_type": "text"}},
             "to": "cohort"},
        ],
    })
    assert sync.status_code == 200, sync.text
    assert sync.json()["status"] == "created"
    return sync.json()["data"]["sync_id"]


def _trigger(api: httpx.Client, sync_id: int, **body: Any) -> dict[str, Any]:
    response = api.post(f"/syncs/{sync_id}/trigger", json=body or None)
    assert response.status_code == 200, response.text
    return wait_for_run(api, response.json()["data"]["sync_run_id"])


def _destination(conn: psycopg.Connection, schema: str) -> dict[int, tuple[Any, ...]]:
    rows = conn.execute(
        f'SELECT id, email, full_name, score, cohort FROM "{schema}".crm_contacts'
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_upsert_sync_end_to_end(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _seed(pg_conn, pg_schema)
    sync_id = _create_sync(api, pg_database, pg_schema)

    first = _trigger(api, sync_id)
    assert first["status"] == "completed", first["error_message"]
    assert first["full_sync"] is True
    assert first["source_record_count"] == 1003
    assert first["records_invalid"] == first["source_record_invalids"] == 3
    assert first["records_processed"] == 1000
    assert first["records_updated"] == 1000
    assert first["records_failed"] == 0
    dest = _destination(pg_conn, pg_schema)
    assert len(dest) == 1000
    assert dest[7] == ("user7@example.com", "User 7", 3.5, "cohort_1")
    assert 5000 not in dest

    pg_conn.execute(
        f"UPDATE \"{pg_schema}\".customers SET email = 'changed' || customer_id || '@example.com'"
        " WHERE customer_id BETWEEN 11 AND 20"
    )
    pg_conn.execute(
        f"INSERT INTO \"{pg_schema}\".customers"
        " SELECT g, 'new' || g || '@example.com', 'New ' || g, 0 FROM generate_series(2001, 2005) g"
    )
    second = _trigger(api, sync_id)
    assert second["status"] == "completed", second["error_message"]
    assert second["full_sync"] is False
    assert second["source_record_count"] == 1008
    assert second["source_record_updates"] == 15
    assert second["records_processed"] == 15
    assert second["records_updated"] == 15
    dest = _destination(pg_conn, pg_schema)
    assert len(dest) == 1005
    assert dest[15][0] == "changed15@example.com"
    assert dest[2003] == ("new2003@example.com", "New 2003", 0.0, "cohort_1")

    third = _trigger(api, sync_id)
    assert third["status"] == "completed"
    assert third["records_processed"] == 0
    assert third["records_updated"] == 0

    full = _trigger(api, sync_id, force_full_sync=True)
    assert full["full_sync"] is True
    assert full["records_processed"] == 1005

    runs = api.get(f"/syncs/{sync_id}/sync_runs", params={"per_page": 2}).json()
    assert runs["pagination"]["total_records"] == 4
    assert runs["data"][0]["id"] == full["id"]
    assert runs["pagination"]["next_page"] == 2
