"""Malformed input: a 4xx in the Census error shape naming the problem, and nothing
half-created left behind."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import pg_credentials


def _error(response: httpx.Response, code: int, *needles: str) -> None:
    assert response.status_code == code, response.text
    body = response.json()
    assert body["status"] in ("error", code, "not_found")
    for needle in needles:
        assert needle in body["message"], (needle, body["message"])


def _count(api: httpx.Client, path: str) -> int:
    return api.get(path).json()["pagination"]["total_records"]


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (None, ["connection"]),
        ({}, ["connection"]),
        ({"connection": "postgres"}, ["connection"]),
        ({"connection": {"credentials": {}}}, ["connection.type"]),
        ({"connection": {"type": "oracle_v1", "credentials": {}}}, ["oracle_v1", "postgres"]),
        ({"connection": {"type": "postgres"}}, ["connection.credentials"]),
        ({"connection": {"type": "postgres", "credentials": "x"}}, ["connection.credentials"]),
        ({"connection": {"type": 5, "credentials": {}}}, ["connection.type"]),
        ({"connection": {"type": "postgres", "credentials": {}, "sync_engine": "turbo"}},
         ["sync_engine"]),
    ],
)
def test_structurally_bad_sources_are_400(api: httpx.Client, body: Any, needles: list[str]) -> None:
    before = _count(api, "/sources")
    _error(api.post("/sources", json=body), 400, *needles)
    assert _count(api, "/sources") == before


def test_invalid_json_is_400(api: httpx.Client) -> None:
    response = api.post(
        "/sources", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    _error(response, 400, "JSON")
    _error(api.post("/sources", json=[1, 2]), 400, "object")


def test_credentials_missing_a_field_are_saved_with_a_failed_test(api: httpx.Client) -> None:
    response = api.post("/sources", json={"connection": {
        "type": "postgres", "credentials": {"hostname": "127.0.0.1", "password": "pw"}}})
    assert response.status_code == 201
    source = response.json()["data"]
    assert source["last_test_succeeded"] is False
    step = source["last_test_results"]["steps"][0]
    assert step["status"] == "failed"
    assert "credentials.database" in step["error"]["message"]
    assert "credentials.user" in step["error"]["message"]
    assert "password" not in source["connection_details"]
    api.delete(f"/sources/{source['id']}")


def test_unreachable_database_fails_the_test_with_the_drivers_message(
    api: httpx.Client, pg_database: str
) -> None:
    creds = dict(pg_credentials(pg_database), port=1)
    source = api.post("/sources", json={"connection": {"type": "postgres", "credentials": creds}})
    assert source.status_code == 201
    data = source.json()["data"]
    assert data["last_test_succeeded"] is False
    assert data["last_test_results"]["steps"][0]["step"] == "Verify connectivity"
    assert data["last_test_results"]["steps"][0]["error"]["message"]
    assert data["name"] == "Postgres - 127.0.0.1"
    fixed = api.patch(
        f"/sources/{data['id']}", json={"connection": {"credentials": {"port": 5432}}}
    )
    assert fixed.status_code == 200
    assert fixed.json()["status"] == "updated"
    assert fixed.json()["data"]["last_test_succeeded"] is True
    assert fixed.json()["data"]["connection_details"]["port"] == 5432
    _error(api.patch(f"/sources/{data['id']}", json={"connection": {"type": "mysql"}}), 400, "type")
    api.delete(f"/sources/{data['id']}")


def test_secrets_are_never_returned(api: httpx.Client, pg_database: str) -> None:
    creds = dict(pg_credentials(pg_database), password="hunter2-secret")
    created = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "credentials": creds}}).json()["data"]
    for response in (api.get(f"/destinations/{created['id']}"), api.get("/destinations")):
        assert "hunter2-secret" not in response.text
    api.delete(f"/destinations/{created['id']}")


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({}, ["service_connection"]),
        ({"service_connection": {"type": "nope", "credentials": {}}}, ["nope", "postgres"]),
        ({"service_connection": {"type": "postgres", "credentials": []}},
         ["service_connection.credentials"]),
        ({"service_connection": {"type": "postgres", "name": 7, "credentials": {}}},
         ["service_connection.name"]),
    ],
)
def test_bad_destinations_are_400(api: httpx.Client, body: Any, needles: list[str]) -> None:
    before = _count(api, "/destinations")
    _error(api.post("/destinations", json=body), 400, *needles)
    assert _count(api, "/destinations") == before


@pytest.fixture
def wired(api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str,
          pg_database: str) -> dict[str, Any]:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".src (id int, email text)')
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".dst (id int PRIMARY KEY, email text, note text)')
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".nokey (id int, email text)')
    creds = pg_credentials(pg_database)
    source = api.post("/sources", json={"connection": {"type": "postgres", "credentials": creds}})
    source_id = source.json()["data"]["id"]
    model = api.post(f"/sources/{source_id}/models",
                     json={"name": "src", "query": f'SELECT * FROM "{pg_schema}".src'})
    destination = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "credentials": creds}})
    return {"source": source_id, "model": model.json()["data"]["id"],
            "destination": destination.json()["data"]["id"], "schema": pg_schema}


def _sync_body(w: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body = {
        "operation": "upsert",
        "source_attributes": {
            "connection_id": w["source"], "object": {"type": "model", "id": w["model"]}
        },
        "destination_attributes": {
            "connection_id": w["destination"], "object": f"{w['schema']}.dst"
        },
        "mappings": [
            {"from": {"type": "column", "data": "id"}, "to": "id", "is_primary_identifier": True},
            {"from": {"type": "column", "data": "email"}, "to": "email"},
        ],
    }
    body.update(overrides)
    return body


def test_bad_syncs_are_400_and_create_nothing(api: httpx.Client, wired: dict[str, Any]) -> None:
    w = wired
    key = {"from": {"type": "column", "data": "id"}, "to": "id", "is_primary_identifier": True}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({k: v for k, v in _sync_body(w).items() if k != "operation"}, 400, "operation"),
        ({k: v for k, v in _sync_body(w).items() if k != "mappings"}, 400, "mappings"),
        (_sync_body(w, operation="teleport"), 400, "operation"),
        (_sync_body(w, mappings="id"), 400, "mappings"),
        (_sync_body(w, mappings=[{"from": {"type": "column", "data": "id"}, "to": "id"}]),
         400, "is_primary_identifier"),
        (_sync_body(w, mappings=[key, {"from": {"type": "column", "data": "email"}, "to": "nope"}]),
         400, "mappings[1].to"),
        (_sync_body(w, mappings=[key, {"from": {"type": "magic"}, "to": "email"}]),
         400, "mappings[1].from.type"),
        (_sync_body(w, mappings=[key, {"from": {"type": "liquid_template",
                                                 "data": {"liquid_template": "{{ x "}},
                                       "to": "email"}]),
         400, "liquid_template"),
        (_sync_body(w, source_attributes={"connection_id": "one"}),
         400, "source_attributes.connection_id"),
        (_sync_body(w, source_attributes={"connection_id": w["source"],
                                          "object": {"type": "model"}}),
         400, "source_attributes.object"),
        (_sync_body(w, source_attributes={"connection_id": w["source"],
                                          "object": {"type": "model", "id": 999999}}),
         404, "model"),
        (_sync_body(w, source_attributes={"connection_id": 999999,
                                          "object": {"type": "model", "id": w["model"]}}),
         404, "source"),
        (_sync_body(w, destination_attributes={"connection_id": w["destination"],
                                               "object": f"{w['schema']}.missing"}),
         404, "missing"),
        (_sync_body(w, destination_attributes={"connection_id": w["destination"],
                                               "object": f"{w['schema']}.nokey"}), 400, "unique"),
        (_sync_body(w, mode={"type": "triggered", "triggers": {"schedule": {"frequency": "hourly",
                                                                            "minute": 99}}}),
         400, "minute"),
    ]
    before = _count(api, "/syncs")
    for body, code, needle in cases:
        _error(api.post("/syncs", json=body), code, needle)
    assert _count(api, "/syncs") == before


def test_model_with_failing_sql_is_400_with_the_database_message(
    api: httpx.Client, wired: dict[str, Any]
) -> None:
    before = _count(api, f"/sources/{wired['source']}/models")
    response = api.post(f"/sources/{wired['source']}/models",
                        json={"name": "bad", "query": "SELECT * FROM no_such_table_zz"})
    _error(response, 400, "no_such_table_zz")
    assert _count(api, f"/sources/{wired['source']}/models") == before
    _error(api.post(f"/sources/{wired['source']}/models", json={"query": "SELECT 1"}), 400, "name")
    # a failing query on update keeps the model as it was
    path = f"/sources/{wired['source']}/models/{wired['model']}"
    columns = api.get(path).json()["data"]["columns"]
    _error(api.patch(path, json={"query": "SELECT nope FROM nowhere"}), 400, "nowhere")
    assert api.get(path).json()["data"]["columns"] == columns


def test_in_use_source_and_destination_cannot_be_deleted(
    api: httpx.Client, wired: dict[str, Any]
) -> None:
    sync = api.post("/syncs", json=_sync_body(wired))
    assert sync.status_code == 200, sync.text
    sync_id = sync.json()["data"]["sync_id"]
    _error(api.delete(f"/sources/{wired['source']}"), 409, str(sync_id))
    _error(api.delete(f"/destinations/{wired['destination']}"), 409, str(sync_id))
    _error(api.post(f"/syncs/{sync_id}/trigger", json={"force_full_sync": "yes"}), 400,
           "force_full_sync")
    assert api.delete(f"/syncs/{sync_id}").json() == {"status": "deleted"}
    assert api.delete(f"/sources/{wired['source']}").status_code == 200


def test_validate_only_stores_nothing(api: httpx.Client, wired: dict[str, Any]) -> None:
    before = _count(api, "/syncs")
    response = api.post("/syncs", json=_sync_body(wired, validate_only=True))
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    assert _count(api, "/syncs") == before


def test_secret_under_an_alias_is_not_echoed_when_credentials_are_invalid(
    api: httpx.Client,
) -> None:
    response = api.post("/sources", json={"connection": {"type": "snowflake", "credentials": {
        "user": "census", "private_key_pkcs8": "-----BEGIN PRIVATE KEY-----abc",
        "password": "pw-secret", "made_up": "x"}}})
    assert response.status_code == 201
    source = response.json()["data"]
    assert source["last_test_succeeded"] is False
    assert "account" in source["last_test_results"]["steps"][0]["error"]["message"]
    assert "BEGIN PRIVATE KEY" not in response.text
    assert "pw-secret" not in response.text
    assert source["connection_details"] == {"user": "census"}
    assert source["name"].startswith("Snowflake")
    api.delete(f"/sources/{source['id']}")


def test_bad_alert_attributes_are_400_naming_the_field(
    api: httpx.Client, wired: dict[str, Any]
) -> None:
    before = _count(api, "/syncs")
    bad = [{"type": "InvalidRecordPercentAlertConfiguration", "options": {"threshold": 250}}]
    _error(api.post("/syncs", json=_sync_body(wired, alert_attributes=bad)), 400,
           "alert_attributes[0].options.threshold")
    _error(api.post("/syncs", json=_sync_body(wired, alert_attributes=[{"type": "Nope"}])), 400,
           "alert_attributes[0].type")
    assert _count(api, "/syncs") == before
