"""Topics of HTTP Request sources over the real API: the reference's create/fetch/
update rules (400/404/405/409), messages posted to the ingestion endpoint with the
topic's secret, and a sync that reads a topic into a PostgreSQL table."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api.conftest import Server, wait_for_run
from tests.api.state_store import state_rows
from tests.conftest import pg_credentials

SAMPLE = {
    "id": 1,
    "email": "jill@foo.com",
    "name": "Jill",
    "vip": True,
    "score": 1.5,
    "address": {"city": "Lyon"},
}


def _http_source(api: httpx.Client) -> int:
    response = api.post(
        "/sources",
        json={"connection": {"type": "http_request", "name": "App events", "credentials": {}}},
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["last_test_succeeded"] is True
    return response.json()["data"]["id"]


def _ingest(server: Server, topic: dict[str, Any], body: Any, secret: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.post(topic["ingestion_url"], json=body, headers=headers, timeout=30)


def _message_count(server: Server, topic_id: int) -> int:
    return state_rows(server, f"SELECT count(*) FROM topic_messages WHERE topic_id = {topic_id}")[
        0
    ][0]


def test_topic_create_fetch_update_and_errors(
    server: Server, api: httpx.Client, pg_database: str
) -> None:
    source_id = _http_source(api)
    created = api.post(
        f"/sources/{source_id}/topics",
        json={"name": "NewAppUsers", "sample_message": SAMPLE, "description": "Signups"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created"
    topic = created.json()["data"]
    assert topic["schema"] == {
        "id": "number",
        "email": "string",
        "name": "string",
        "vip": "boolean",
        "score": "number",
        "address": "object",
    }
    assert topic["description"] == "Signups"
    assert topic["ingestion_secret"].startswith("ingest-")
    assert topic["ingestion_url"] == f"{server.base_url}/ingest/{source_id}/NewAppUsers"
    # the secret is shown once and stored hashed
    fetched = api.get(f"/sources/{source_id}/topics/{topic['id']}")
    assert fetched.status_code == 200 and fetched.json()["status"] == "success"
    assert "ingestion_secret" not in fetched.json()["data"]
    stored = state_rows(server, f"SELECT secret_hash FROM topics WHERE id = {topic['id']}")[0][0]
    assert topic["ingestion_secret"] not in stored and len(stored) == 64

    listed = api.get(f"/sources/{source_id}/topics").json()
    assert [t["id"] for t in listed["data"]] == [topic["id"]]
    assert listed["pagination"]["total_records"] == 1

    def post(body: dict[str, Any], sid: int = source_id) -> httpx.Response:
        return api.post(f"/sources/{sid}/topics", json=body)

    # 400 naming the field; 404 unknown source; 405 not an HTTP Request source; 409 duplicate
    for body, field in (
        ({"sample_message": SAMPLE}, "name"),
        ({"name": "x"}, "sample_message"),
        ({"name": "bad name!", "sample_message": SAMPLE}, "name"),
        ({"name": "x", "sample_message": [1]}, "sample_message"),
    ):
        response = post(body)
        assert response.status_code == 400, response.text
        assert response.json()["status"] == "error" and field in response.json()["message"]
    assert post({"name": "x", "sample_message": SAMPLE}, 999_999).status_code == 404
    pg = api.post(
        "/sources",
        json={"connection": {"type": "postgres", "credentials": pg_credentials(pg_database)}},
    ).json()["data"]["id"]
    wrong = post({"name": "x", "sample_message": SAMPLE}, pg)
    assert wrong.status_code == 405 and "HTTP Request" in wrong.json()["message"]
    assert api.get(f"/sources/{pg}/topics").status_code == 405
    duplicate = post({"name": "NewAppUsers", "sample_message": SAMPLE})
    assert duplicate.status_code == 409 and duplicate.json()["status"] == "error"
    assert api.get(f"/sources/{source_id}/topics").json()["pagination"]["total_records"] == 1

    other = post({"name": "Other", "sample_message": {"a": "b"}}).json()["data"]
    path = f"/sources/{source_id}/topics/{topic['id']}"
    assert api.patch(path, json={"name": "Other"}).status_code == 409
    assert api.patch(path, json={"sample_message": "no"}).status_code == 400
    updated = api.patch(
        path, json={"description": "App signups", "sample_message": {"id": 2, "email": "a@b.co"}}
    )
    assert updated.status_code == 200 and updated.json()["status"] == "updated"
    assert updated.json()["data"]["schema"] == {"id": "number", "email": "string"}
    assert updated.json()["data"]["description"] == "App signups"
    assert api.get(f"/sources/{pg}/topics/{other['id']}").status_code == 405
    assert api.get(f"/sources/{source_id}/topics/999999").status_code == 404


def test_ingest_and_sync_a_topic_into_postgres(
    server: Server,
    api: httpx.Client,
    pg_conn: psycopg.Connection,
    pg_schema: str,
    pg_database: str,
) -> None:
    source_id = _http_source(api)
    topic = api.post(
        f"/sources/{source_id}/topics", json={"name": "signups", "sample_message": SAMPLE}
    ).json()["data"]
    secret = topic["ingestion_secret"]

    # wrong or missing secret, malformed bodies: 4xx, nothing stored
    assert _ingest(server, topic, SAMPLE, "ingest-wrong").status_code == 401
    assert _ingest(server, topic, SAMPLE, None).status_code == 401
    mixed = _ingest(server, topic, [SAMPLE, "not an object"], secret)
    assert mixed.status_code == 400 and "[1]" in mixed.json()["message"]
    bad_json = httpx.post(
        topic["ingestion_url"], content=b"{nope", headers={"Authorization": f"Bearer {secret}"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["status"] == "error"
    assert _message_count(server, topic["id"]) == 0

    messages = [
        {
            "id": 1,
            "email": "jill@foo.com",
            "name": "Jill",
            "vip": True,
            "score": 1.5,
            "address": {"city": "Lyon"},
        },
        {"id": 2, "email": "joe@foo.com", "name": "Joe", "vip": False, "score": 2},
        {"id": 3, "email": "ann@foo.com", "extra": "ignored", "score": "n/a"},
    ]
    accepted = _ingest(server, topic, messages, secret)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["messages"] == 3

    pg_conn.execute(
        f'CREATE TABLE "{pg_schema}".contacts (id bigint PRIMARY KEY, email text, '
        "full_name text, vip boolean, score float8, address text)"
    )
    dest = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "postgres",
                "name": "CRM",
                "credentials": pg_credentials(pg_database),
            }
        },
    )
    assert dest.status_code == 201, dest.text
    mappings = [
        {"from": {"type": "column", "data": "id"}, "to": "id", "is_primary_identifier": True},
        {"from": {"type": "column", "data": "email"}, "to": "email"},
        {"from": {"type": "column", "data": "name"}, "to": "full_name"},
        {"from": {"type": "column", "data": "vip"}, "to": "vip"},
        {"from": {"type": "column", "data": "score"}, "to": "score"},
        {"from": {"type": "column", "data": "address"}, "to": "address"},
    ]
    body = {
        "operation": "upsert",
        "source_attributes": {
            "connection_id": source_id,
            "object": {"type": "topic", "id": topic["id"]},
        },
        "destination_attributes": {
            "connection_id": dest.json()["data"]["id"],
            "object": f"{pg_schema}.contacts",
        },
        "mappings": mappings,
    }
    unknown = api.post(
        "/syncs",
        json={
            **body,
            "source_attributes": {
                "connection_id": source_id,
                "object": {"type": "topic", "id": 999_999},
            },
        },
    )
    assert unknown.status_code == 400 and "source_attributes.object" in unknown.json()["message"]
    created = api.post("/syncs", json=body)
    assert created.status_code == 200, created.text
    sync_id = created.json()["data"]["sync_id"]
    fetched = api.get(f"/syncs/{sync_id}").json()["data"]
    assert fetched["source_attributes"]["object"]["type"] == "topic"

    def run() -> dict[str, Any]:
        started = api.post(f"/syncs/{sync_id}/trigger")
        assert started.status_code == 200, started.text
        return wait_for_run(api, started.json()["data"]["sync_run_id"])

    first = run()
    assert first["status"] == "completed", first
    rows = pg_conn.execute(
        f'SELECT id, email, full_name, vip, score, address FROM "{pg_schema}".contacts ORDER BY id'
    ).fetchall()
    assert rows == [
        (1, "jill@foo.com", "Jill", True, 1.5, '{"city":"Lyon"}'),
        (2, "joe@foo.com", "Joe", False, 2.0, None),
        (3, "ann@foo.com", None, None, None, None),
    ]

    assert (
        _ingest(server, topic, {"id": 4, "email": "new@foo.com", "name": "New"}, secret).status_code
        == 202
    )
    second = run()
    assert second["status"] == "completed", second
    count = pg_conn.execute(f'SELECT count(*) FROM "{pg_schema}".contacts').fetchone()
    assert count == (4,)
