"""Destination objects, object types, object creation, refreshes and custom destination
types through the real API (§13-§15), against real PostgreSQL and a real JSON-RPC server."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import wait_for_run
from tests.conftest import pg_credentials, unique_name
from tests.support.custom_destination_server import CustomDestinationServer

API_KEY = "acme-" + "k" * 12


def _poll(api: httpx.Client, url: str, **params: Any) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = api.get(url, params=params)
        body = response.json()
        status = body.get("data", body).get("status") if isinstance(body, dict) else None
        if status != "processing":
            return response
        time.sleep(0.1)
    raise AssertionError(f"{url} still processing")


def _pg_destination(api: httpx.Client, database: str) -> int:
    response = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "postgres",
                "name": unique_name("pg"),
                "credentials": pg_credentials(database),
            }
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["last_test_succeeded"] is True
    return response.json()["data"]["id"]


def _embedded(api: httpx.Client, dest_id: int) -> dict[str, Any]:
    data = api.get(f"/destinations/{dest_id}").json()["data"]
    return {o["full_name"]: o for o in data["objects"]}


def _refresh_objects(api: httpx.Client, dest_id: int) -> None:
    started = api.post(f"/destinations/{dest_id}/refresh_objects")
    assert started.status_code == 200
    assert set(started.json()) == {"refresh_key"}
    key = started.json()["refresh_key"]
    done = _poll(api, f"/destinations/{dest_id}/refresh_objects_status", refresh_key=key)
    assert done.json() == {"status": "completed"}


def test_object_types_of_connectors(api: httpx.Client) -> None:
    body = api.get("/connectors/postgres/object_types").json()
    assert body["status"] == "success" and body["pagination"]["total_records"] == 1
    table = body["data"][0]
    assert table["type"] == "Table"
    assert [a["key"] for a in table["object_attributes"]] == ["schema", "table_name"]
    assert [a["key"] for a in table["field_attributes"]] == ["name", "type", "primary_key"]
    assert "integer" in table["field_attributes"][1]["possible_values"]
    assert api.get("/connectors/webhook/object_types").json()["data"] == []
    missing = api.get("/connectors/no_such_type/object_types")
    assert missing.status_code == 404


def test_create_table_through_object_creation_requests(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    dest_id = _pg_destination(api, pg_database)
    assert api.get(f"/destinations/{dest_id}/object_types").json()["data"][0]["type"] == "Table"
    url = f"/destinations/{dest_id}/object_creation_requests"
    good = {
        "object_type": "Table",
        "object_attributes": {"schema": pg_schema, "table_name": "leads"},
        "fields": [
            {"name": "id", "type": "bigint", "primary_key": True},
            {"name": "email", "type": "string"},
            {"name": "score", "type": "float"},
        ],
    }
    for body, field in [
        ({**good, "object_type": "Sheet"}, "object_type"),
        ({**good, "object_attributes": {"schema": pg_schema}}, "object_attributes.table_name"),
        ({**good, "object_attributes": "leads"}, "object_attributes"),
        ({**good, "fields": [{"name": "id", "type": "varchar(5); drop"}]}, "fields[0].type"),
        ({**good, "fields": [{"name": "id", "colour": "red"}]}, "fields[0].colour"),
        (
            {**good, "fields": [{"name": "id", "type": "bigint", "primary_key": "yes"}]},
            "fields[0].primary_key",
        ),
        ({**good, "fields": []}, "fields"),
    ]:
        bad = api.post(url, json=body)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["status"] == "error" and field in bad.json()["message"]
    assert api.post("/destinations/999999/object_creation_requests", json=good).status_code == 404

    created = api.post(url, json=good)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created"
    poll_url = created.json()["url"]
    assert poll_url.startswith("http://127.0.0.1")
    done = _poll(api, poll_url).json()["data"]
    assert done["status"] == "completed", done
    assert done["object_full_name"] == f"{pg_schema}.leads"
    assert [f["full_name"] for f in done["object"]["fields"]] == ["id", "email", "score"]
    columns = pg_conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'leads' ORDER BY ordinal_position",
        (pg_schema,),
    ).fetchall()
    assert columns == [("id", "bigint"), ("email", "text"), ("score", "double precision")]
    leads = _embedded(api, dest_id)[f"{pg_schema}.leads"]
    assert leads["fields"][0]["can_be_upsert_key"] is True

    again = api.post(url, json=good)
    assert again.status_code == 201
    failed = _poll(api, again.json()["url"]).json()["data"]
    assert failed["status"] == "failed"
    assert "already exists" in failed["message"]


def test_refresh_objects_and_fields_fill_the_embedded_cache(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    dest_id = _pg_destination(api, pg_database)
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".accounts (id int PRIMARY KEY, name text)')
    name = f"{pg_schema}.accounts"
    _refresh_objects(api, dest_id)
    assert [f["full_name"] for f in _embedded(api, dest_id)[name]["fields"]] == ["id", "name"]
    listed = api.get("/destinations", params={"per_page": 100}).json()["data"]
    mine = next(d for d in listed if d["id"] == dest_id)
    assert name in {o["full_name"] for o in mine["objects"]}

    pg_conn.execute(f'ALTER TABLE "{pg_schema}".accounts ADD COLUMN tier text')
    base = f"/destinations/{dest_id}/objects/{name}"
    key = api.post(f"{base}/refresh_fields").json()["refresh_key"]
    assert _poll(api, f"{base}/refresh_fields_status", refresh_key=key).json() == {
        "status": "completed"
    }
    fields = [f["full_name"] for f in _embedded(api, dest_id)[name]["fields"]]
    assert fields == ["id", "name", "tier"]

    pg_conn.execute(f'DROP TABLE "{pg_schema}".accounts')
    key = api.post(f"{base}/refresh_fields").json()["refresh_key"]
    gone = _poll(api, f"{base}/refresh_fields_status", refresh_key=key)
    assert gone.status_code == 400
    assert gone.json()["status"] == "failed" and "not found" in gone.json()["message"]
    assert name not in _embedded(api, dest_id)

    status = f"/destinations/{dest_id}/refresh_objects_status"
    assert api.get(status).status_code == 400
    assert "refresh_key" in api.get(status).json()["message"]
    assert api.get(status, params={"refresh_key": "abc"}).status_code == 400
    assert api.get(status, params={"refresh_key": 99999999}).status_code == 404
    # a key of another kind of job is not this endpoint's
    assert api.get(status, params={"refresh_key": key}).status_code == 404


def test_unknown_type_and_credential_errors(api: httpx.Client, pg_database: str) -> None:
    unknown = api.post(
        "/destinations", json={"service_connection": {"type": "salesforce_x", "credentials": {}}}
    )
    assert unknown.status_code == 400
    message = unknown.json()["message"]
    assert "service_connection.type" in message
    assert "postgres" in message and "custom_api" in message
    before = api.get("/destinations", params={"per_page": 1}).json()["pagination"]["total_records"]
    bad = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "postgres",
                "credentials": {**pg_credentials("no_such_db_x1"), "port": 5432},
            }
        },
    )
    assert bad.status_code == 201, bad.text
    data = bad.json()["data"]
    assert data["last_test_succeeded"] is False
    step = data["last_test_results"]["steps"][0]
    assert step["status"] == "failed" and "no_such_db_x1" in step["error"]["message"]
    assert data["objects"] == []
    after = api.get("/destinations", params={"per_page": 1}).json()["pagination"]["total_records"]
    assert after == before + 1
    api.delete(f"/destinations/{data['id']}")


@pytest.fixture(scope="module")
def rpc_server() -> Iterator[CustomDestinationServer]:
    with CustomDestinationServer(api_key=API_KEY) as srv:
        yield srv


def _register(api: httpx.Client, url: str) -> str:
    service_name = unique_name("acme")
    connector = {
        "service_name": service_name,
        "label": "Acme CRM",
        "configuration_definition": {
            "api_token": {
                "id": "api_token",
                "label": "API Token",
                "type": "string",
                "user_editable": True,
                "secret": True,
                "required": True,
            },
            "region": {"id": "region", "label": "Region", "type": "string", "default": "us"},
        },
        "data": {
            "url": url,
            "headers": {"Authorization": "Bearer {{ api_token }}", "X-Region": "{{ region }}"},
        },
    }
    bad_inputs = [
        ({}, 400, "connector"),
        ({"connector": {**connector, "service_name": "Bad Name"}}, 400, "connector.service_name"),
        ({"connector": {**connector, "service_name": "postgres"}}, 409, "built-in"),
        ({"connector": {**connector, "label": ""}}, 400, "connector.label"),
        ({"connector": {**connector, "data": {"url": "ftp://x"}}}, 400, "connector.data.url"),
        (
            {"connector": {**connector, "data": {"url": url, "headers": {"A": "{{ x"}}}},
            400,
            "connector.data.headers.A",
        ),
        (
            {"connector": {**connector, "configuration_definition": {"k": {"type": "list"}}}},
            400,
            "connector.configuration_definition.k.type",
        ),
    ]
    for body, code, field in bad_inputs:
        response = api.post("/connectors", json=body)
        assert response.status_code == code, (body, response.text)
        assert field in response.json()["message"]
    created = api.post("/connectors", json={"connector": connector})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created"
    data = created.json()["data"]
    assert data["service_name"] == service_name and data["label"] == "Acme CRM"
    fields = {f["id"]: f for f in data["configuration_fields"]["fields"]}
    assert fields["api_token"]["is_password_type_field"] is True
    again = api.post("/connectors", json={"connector": connector})
    assert again.status_code == 409
    return service_name


def _warehouse(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?)",
            [(i, f"person {i}", i * 1.5) for i in range(1, rows + 1)],
        )
        conn.execute("UPDATE people SET name = 'reject this one' WHERE id = 3")


def test_custom_destination_type_end_to_end(
    api: httpx.Client, rpc_server: CustomDestinationServer
) -> None:
    service_name = _register(api, rpc_server.url)
    listed = api.get("/connectors", params={"per_page": 100}).json()["data"]
    assert service_name in {c["service_name"] for c in listed}
    assert api.get(f"/connectors/{service_name}").json()["data"]["label"] == "Acme CRM"
    assert api.get(f"/connectors/{service_name}/object_types").json()["data"] == []

    wrong = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": service_name,
                "name": "Acme",
                "credentials": {"api_token": "wrong"},
            }
        },
    )
    assert wrong.status_code == 201, wrong.text
    step = wrong.json()["data"]["last_test_results"]["steps"][0]
    assert step["error"]["message"] == "Acme rejected the API key (HTTP 401)"
    assert "wrong" not in wrong.text
    dest_id = wrong.json()["data"]["id"]
    fixed = api.patch(
        f"/destinations/{dest_id}",
        json={"service_connection": {"credentials": {"api_token": API_KEY}}},
    )
    assert fixed.json()["data"]["last_test_succeeded"] is True
    assert fixed.json()["data"]["connection_details"] == {"region": "us"}
    contact = api.get(f"/destinations/{dest_id}/objects/contact").json()["data"]
    assert contact["supported_operations"] == ["upsert", "insert", "update", "mirror"]

    home = Path(tempfile.mkdtemp(prefix="reflow-custom-"))
    _warehouse(home / "wh.sqlite", 25)
    source = api.post(
        "/sources",
        json={
            "connection": {
                "type": "sqlite",
                "name": "wh",
                "credentials": {"path": str(home / "wh.sqlite")},
            }
        },
    )
    assert source.status_code == 201, source.text
    source_id = source.json()["data"]["id"]
    model = api.post(
        f"/sources/{source_id}/models",
        json={"name": "people", "query": "SELECT id, name, amount FROM people"},
    )
    assert model.status_code == 201, model.text
    sync = api.post(
        "/syncs",
        json={
            "operation": "upsert",
            "source_attributes": {
                "connection_id": source_id,
                "object": {"type": "model", "id": model.json()["data"]["id"]},
            },
            "destination_attributes": {"connection_id": dest_id, "object": "contact"},
            "mappings": [
                {
                    "from": {"type": "column", "data": "id"},
                    "to": "id",
                    "is_primary_identifier": True,
                },
                {"from": {"type": "column", "data": "name"}, "to": "name"},
                {"from": {"type": "column", "data": "amount"}, "to": "amount"},
            ],
        },
    )
    assert sync.status_code == 200, sync.text
    sync_id = sync.json()["data"]["sync_id"]
    rpc_server.state.records["contact"].clear()
    run_id = api.post(f"/syncs/{sync_id}/trigger").json()["data"]["sync_run_id"]
    run = wait_for_run(api, run_id)
    assert run["status"] == "completed", run["error_message"]
    assert run["records_processed"] == 25
    assert run["records_updated"] == 24
    assert run["records_failed"] == 1
    arrived = rpc_server.state.records["contact"]
    assert sorted(arrived) == [i for i in range(1, 26) if i != 3]
    assert arrived[7] == {"id": 7, "name": "person 7", "amount": 10.5}
    plans = [b["sync_plan"] for b in rpc_server.state.batches()]
    assert {p["sync_id"] for p in plans[-10:]} == {sync_id}
    api.delete(f"/syncs/{sync_id}")
    api.delete(f"/destinations/{dest_id}")


def test_builtin_custom_api_destination(
    api: httpx.Client, rpc_server: CustomDestinationServer
) -> None:
    created = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "custom_api",
                "credentials": {
                    "webhook_url": rpc_server.url + "?census_authentication=hidden",
                    "api_version": 1,
                    "auth_token": API_KEY,
                },
            }
        },
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["last_test_succeeded"] is True
    assert "hidden" not in created.text and API_KEY not in created.text
    bad = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "custom_api",
                "credentials": {"webhook_url": "not a url", "api_version": 2},
            }
        },
    )
    assert bad.status_code == 201
    message = bad.json()["data"]["last_test_results"]["steps"][0]["error"]["message"]
    assert "credentials.webhook_url" in message and "credentials.api_version" in message
    for row in (data, bad.json()["data"]):
        api.delete(f"/destinations/{row['id']}")
