"""A filter segment over a model — nested and/or conditions, a value holding a quote,
an injection attempt — counted in the background and read by a sync into PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api.conftest import wait_for_run
from tests.api.polling import wait_until
from tests.conftest import pg_credentials, unique_name

INJECTION = "x' OR '1'='1"


def atom(attribute: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {
        "attribute": attribute,
        "attribute_type": "property",
        "operator": operator,
        "value": value,
    }


def _seed(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(f'CREATE TABLE "{schema}".people (id int, name text, plan text, score int)')
    conn.execute(
        f"""INSERT INTO "{schema}".people VALUES
            (1, 'Ann', 'pro', 90), (2, 'O''Brien', 'pro', 10), (3, 'Bob', 'pro', 20),
            (4, 'Cy', 'free', 99), (5, {INJECTION!r}, 'pro', 1), (6, 'Di', NULL, 70)""".replace(
            "\"x' OR '1'='1\"", "'x'' OR ''1''=''1'"
        )
    )
    conn.execute(f'CREATE TABLE "{schema}".audience (id bigint PRIMARY KEY, name text)')


def _status(api: httpx.Client, source_id: int, segment_id: int) -> dict[str, Any]:
    def ready() -> Any:
        data = api.get(f"/sources/{source_id}/filter_segments/{segment_id}/source_status").json()
        return data["data"] if data["data"]["creation_status"] else None

    return wait_until(ready, f"segment {segment_id} to be counted")


def test_segment_read_through_a_sync(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _seed(pg_conn, pg_schema)
    creds = pg_credentials(pg_database)
    source_id = api.post(
        "/sources",
        json={"connection": {"type": "postgres", "name": unique_name("wh"), "credentials": creds}},
    ).json()["data"]["id"]
    model_id = api.post(
        f"/sources/{source_id}/models",
        json={"name": "People", "query": f'SELECT * FROM "{pg_schema}".people'},
    ).json()["data"]["id"]

    # plan = 'pro' AND (score > 50 OR name = 'O''Brien')
    molecules = [
        atom("plan", "is", "pro"),
        [atom("score", "greaterthan", 50), "OR", atom("name", "is", "O'Brien")],
    ]
    created = api.post(
        f"/sources/{source_id}/filter_segments",
        json={"name": "VIP people", "molecules": molecules, "dataset_id": model_id},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "created"
    segment = body["data"]
    assert body["filter_segment_source_url"].endswith(
        f"/api/v1/sources/{source_id}/filter_segments/{segment['id']}/source_status"
    )
    assert segment["model_id"] == segment["dataset_id"] == model_id
    assert "'O''Brien'" in segment["query"]
    assert segment["resource_identifier"] == "segment:vip-people"
    assert _status(api, source_id, segment["id"])["record_count"] == 2

    # the injection attempt is a value like any other: it matches exactly one row
    sneaky = api.post(
        f"/sources/{source_id}/filter_segments",
        json={
            "name": "Sneaky",
            "dataset_id": model_id,
            "molecules": [atom("name", "is", INJECTION)],
        },
    )
    assert sneaky.status_code == 201, sneaky.text
    assert _status(api, source_id, sneaky.json()["data"]["id"])["record_count"] == 1
    # a related segment: pro people who are not VIPs (the NULL plan stays out)
    others = api.post(
        f"/sources/{source_id}/filter_segments",
        json={
            "name": "Other pros",
            "dataset_id": model_id,
            "molecules": [
                atom("plan", "isnotnull"),
                "AND",
                atom("plan", "equals", "pro"),
                {"filter_segment_id": segment["id"], "is_member": False},
            ],
        },
    )
    assert others.status_code == 201, others.text
    assert _status(api, source_id, others.json()["data"]["id"])["record_count"] == 2

    dest_id = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "postgres",
                "name": unique_name("crm"),
                "credentials": creds,
            }
        },
    ).json()["data"]["id"]
    sync = api.post(
        "/syncs",
        json={
            "operation": "upsert",
            "source_attributes": {
                "connection_id": source_id,
                "filter_segment_id": segment["id"],
                "object": {"type": "dataset", "id": model_id},
            },
            "destination_attributes": {"connection_id": dest_id, "object": f"{pg_schema}.audience"},
            "mappings": [
                {
                    "from": {"type": "column", "data": "id"},
                    "to": "id",
                    "is_primary_identifier": True,
                },
                {"from": {"type": "column", "data": "name"}, "to": "name"},
            ],
        },
    )
    assert sync.status_code == 200, sync.text
    sync_id = sync.json()["data"]["sync_id"]
    echoed = api.get(f"/syncs/{sync_id}").json()["data"]["source_attributes"]["object"]
    assert echoed["type"] == "filter_segment_source"
    assert echoed["filter_segment_id"] == segment["id"]
    run_id = api.post(f"/syncs/{sync_id}/trigger").json()["data"]["sync_run_id"]
    run = wait_for_run(api, run_id)
    assert run["status"] == "completed", run["error_message"]
    rows = pg_conn.execute(f'SELECT id, name FROM "{pg_schema}".audience ORDER BY id').fetchall()
    assert rows == [(1, "Ann"), (2, "O'Brien")]

    # narrowing the segment changes what the next run reads
    patched = api.patch(
        f"/sources/{source_id}/filter_segments/{segment['id']}",
        json={
            "name": "VIP people v2",
            "molecules": [atom("score", "greaterthan", 80), atom("plan", "is", "pro")],
        },
    )
    assert patched.status_code == 200 and patched.json()["status"] == "updated"
    assert _status(api, source_id, segment["id"])["record_count"] == 1
    listed = api.get(f"/sources/{source_id}/filter_segments", params={"name": "vip PEOPLE"}).json()
    assert [s["name"] for s in listed["data"]] == ["VIP people v2"]

    in_use = api.delete(f"/sources/{source_id}/filter_segments/{segment['id']}")
    assert in_use.status_code == 409
    assert api.delete(f"/syncs/{sync_id}").status_code == 200
    for seg in (others.json()["data"], sneaky.json()["data"], segment):
        assert api.delete(f"/sources/{source_id}/filter_segments/{seg['id']}").status_code == 200
    gone = api.get(f"/sources/{source_id}/filter_segments/{segment['id']}")
    assert gone.status_code == 404


def test_bad_segments_are_refused_whole(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _seed(pg_conn, pg_schema)
    source_id = api.post(
        "/sources",
        json={
            "connection": {
                "type": "postgres",
                "name": unique_name("wh"),
                "credentials": pg_credentials(pg_database),
            }
        },
    ).json()["data"]["id"]
    model_id = api.post(
        f"/sources/{source_id}/models",
        json={"name": "People", "query": f'SELECT * FROM "{pg_schema}".people'},
    ).json()["data"]["id"]
    path = f"/sources/{source_id}/filter_segments"
    cases = [
        ({"molecules": [], "dataset_id": model_id}, "name"),
        ({"name": "x", "dataset_id": model_id}, "molecules"),
        ({"name": "x", "molecules": []}, "dataset_id"),
        ({"name": "x", "molecules": [], "dataset_id": 987654}, "dataset_id"),
        (
            {
                "name": "x",
                "dataset_id": model_id,
                "molecules": [atom('name" FROM x; --', "isnull")],
            },
            "molecules[0].attribute",
        ),
        (
            {
                "name": "x",
                "dataset_id": model_id,
                "molecules": [[atom("name", "isnull"), atom("plan", "between", 3)]],
            },
            "molecules[0][1].value",
        ),
        (
            {"name": "x", "dataset_id": model_id, "molecules": [atom("score", "contains", "9")]},
            "molecules",
        ),  # the database refuses
    ]
    for body, field in cases:
        response = api.post(path, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["status"] == "error"
        assert field in response.json()["message"], (field, response.json())
    assert api.get(path).json()["pagination"]["total_records"] == 0

    sync = api.post(
        "/syncs",
        json={
            "operation": "upsert",
            "source_attributes": {
                "connection_id": source_id,
                "filter_segment_id": 987654,
                "object": {"type": "dataset", "id": model_id},
            },
            "destination_attributes": {"connection_id": 1, "object": "x"},
            "mappings": [
                {
                    "from": {"type": "column", "data": "id"},
                    "to": "id",
                    "is_primary_identifier": True,
                }
            ],
        },
    )
    assert sync.status_code in (400, 404), sync.text
    assert api.delete(f"/sources/{source_id}").status_code == 200
