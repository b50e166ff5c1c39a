"""A segment_membership mapping sends the segment a sync reads, by name or by id; a
renamed segment is sent again; without a segment source the mapping is refused."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api.polling import wait_until
from tests.api.syncing import col, connections, model, rows, run
from tests.conftest import unique_name


def _membership(to: str, identify_by: str) -> dict[str, Any]:
    return {"from": {"type": "segment_membership", "data": {"identify_by": identify_by}},
            "to": to, "is_primary_identifier": False}


def _segment(api: httpx.Client, source_id: int, model_id: int) -> int:
    atom = {"type": "atom", "attribute": "plan", "attribute_type": "property",
            "operator": "is", "value": "pro"}
    response = api.post(f"/sources/{source_id}/filter_segments",
                        json={"name": unique_name("pros"), "molecules": [atom],
                              "dataset_id": model_id})
    assert response.status_code == 201, response.text
    segment_id = response.json()["data"]["id"]
    path = f"/sources/{source_id}/filter_segments/{segment_id}/source_status"
    wait_until(lambda: api.get(path).json()["data"]["creation_status"] or None,
               f"segment {segment_id} to be counted")
    return segment_id


def _body(source_id: int, model_id: int, segment_id: int | None, dest_id: int, obj: str,
          mappings: list[dict[str, Any]]) -> dict[str, Any]:
    source: dict[str, Any] = {"connection_id": source_id,
                              "object": {"type": "dataset", "id": model_id}}
    if segment_id is not None:
        source["filter_segment_id"] = segment_id
    return {"operation": "upsert", "source_attributes": source,
            "destination_attributes": {"connection_id": dest_id, "object": obj},
            "mappings": mappings}


def test_segment_membership_sends_the_segment_by_name_and_id(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    schema = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {schema}.people AS SELECT g AS id,"
                    " CASE WHEN g % 2 = 0 THEN 'pro' ELSE 'free' END AS plan"
                    " FROM generate_series(1, 10) g")
    pg_conn.execute(f"CREATE TABLE {schema}.members"
                    " (id int PRIMARY KEY, segment text, segment_id bigint)")
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f"SELECT id, plan FROM {schema}.people")
    segment_id = _segment(api, source_id, model_id)
    name = api.get(f"/sources/{source_id}/filter_segments/{segment_id}").json()["data"]["name"]

    mappings = [col("id", key=True), _membership("segment", "name"),
                _membership("segment_id", "id")]
    response = api.post("/syncs", json=_body(source_id, model_id, segment_id, dest_id,
                                             f"{pg_schema}.members", mappings))
    assert response.status_code == 200, response.text
    sync_id = response.json()["data"]["sync_id"]
    stored = api.get(f"/syncs/{sync_id}").json()["data"]["mappings"]
    assert stored[1]["from"] == {"type": "segment_membership", "data": {"identify_by": "name"}}

    first = run(api, sync_id)
    assert (first["status"], first["records_processed"]) == ("completed", 5), first
    members = f"SELECT id, segment, segment_id FROM {schema}.members ORDER BY id"
    assert rows(pg_conn, members) == [(i, name, segment_id) for i in (2, 4, 6, 8, 10)]
    assert run(api, sync_id)["records_processed"] == 0

    renamed = unique_name("renamed")
    patched = api.patch(f"/sources/{source_id}/filter_segments/{segment_id}",
                        json={"name": renamed})
    assert patched.status_code == 200, patched.text
    again = run(api, sync_id)
    assert (again["records_processed"], again["full_sync"]) == (5, True), again
    assert {r[1] for r in rows(pg_conn, members)} == {renamed}


def test_segment_membership_needs_a_segment_source_and_a_known_identify_by(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    schema = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {schema}.src AS SELECT g AS id, 'pro' AS plan"
                    " FROM generate_series(1, 3) g")
    pg_conn.execute(f"CREATE TABLE {schema}.dst (id int PRIMARY KEY, segment text)")
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f"SELECT id, plan FROM {schema}.src")
    before = len(api.get("/syncs", params={"per_page": 100}).json()["data"])

    no_segment = _body(source_id, model_id, None, dest_id, f"{pg_schema}.dst",
                       [col("id", key=True), _membership("segment", "name")])
    response = api.post("/syncs", json=no_segment)
    assert response.status_code == 400, response.text
    assert "mappings[1].from" in response.json()["message"]

    segment_id = _segment(api, source_id, model_id)
    bad = _body(source_id, model_id, segment_id, dest_id, f"{pg_schema}.dst",
                [col("id", key=True), _membership("segment", "email")])
    response = api.post("/syncs", json=bad)
    assert response.status_code == 400, response.text
    assert "mappings[1].from.data" in response.json()["message"]
    assert len(api.get("/syncs", params={"per_page": 100}).json()["data"]) == before
