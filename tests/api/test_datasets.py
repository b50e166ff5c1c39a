"""SQL datasets (§8): the same rows as models, seen through ``/datasets``."""

from __future__ import annotations

import httpx
import psycopg

from tests.api.polling import wait_refresh
from tests.api.syncing import pg_source
from tests.conftest import unique_name


def test_sql_dataset_lifecycle(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".users (id int, email text, active bool)')
    source_id = pg_source(api, pg_database, name=unique_name("wh"))
    query = f'SELECT id, email FROM "{pg_schema}".users WHERE active'
    created = api.post(
        "/datasets",
        json={
            "type": "sql",
            "name": "Active users",
            "source_id": source_id,
            "query": query,
            "description": None,
        },
    )
    assert created.status_code == 201, created.text
    dataset = created.json()["data"]
    assert created.json()["status"] == "created"
    assert dataset["type"] == "sql" and dataset["source_id"] == source_id
    assert dataset["columns"] == [
        {"name": "id", "data_type": "integer"},
        {"name": "email", "data_type": "text"},
    ]
    assert dataset["resource_identifier"] == "dataset:active-users"

    # one row, two views: the dataset is the model with the same id
    model = api.get(f"/sources/{source_id}/models/{dataset['id']}").json()["data"]
    assert model["dataset_id"] == dataset["id"] and model["query"] == query
    fetched = api.get(f"/datasets/{dataset['id']}").json()
    assert fetched["status"] == "success" and fetched["data"]["name"] == "Active users"
    listed = api.get("/datasets", params={"type": "sql", "per_page": 100}).json()
    assert dataset["id"] in [d["id"] for d in listed["data"]]
    none = api.get("/datasets", params={"type": "entity_resolution"}).json()
    assert none["data"] == [] and none["pagination"]["total_records"] == 0

    new_query = f'SELECT id, email, active FROM "{pg_schema}".users'
    patched = api.patch(f"/datasets/{dataset['id']}", json={"query": new_query, "name": "Users"})
    assert patched.status_code == 200 and patched.json()["status"] == "updated"
    assert [c["name"] for c in patched.json()["data"]["columns"]] == ["id", "email", "active"]
    key = api.post(f"/datasets/{dataset['id']}/refresh_columns").json()["refresh_key"]
    status = wait_refresh(api, f"/datasets/{dataset['id']}/refresh_columns_status", key)
    assert status.json() == {"status": "completed"}

    bad_patch = api.patch(f"/datasets/{dataset['id']}", json={"query": "SELECT nope FROM nowhere"})
    assert bad_patch.status_code == 400 and "query" in bad_patch.json()["message"]
    moved = api.patch(f"/datasets/{dataset['id']}", json={"source_id": source_id + 1000})
    assert moved.status_code == 400 and "source_id" in moved.json()["message"]
    assert api.get(f"/datasets/{dataset['id']}").json()["data"]["query"] == new_query

    assert api.delete(f"/datasets/{dataset['id']}").json() == {"status": "deleted"}
    assert api.get(f"/datasets/{dataset['id']}").status_code == 404
    assert api.get(f"/sources/{source_id}/models/{dataset['id']}").status_code == 404
    assert api.delete(f"/sources/{source_id}").status_code == 200


def test_bad_datasets_are_refused(api: httpx.Client, pg_database: str) -> None:
    source_id = pg_source(api, pg_database, name=unique_name("wh"))
    before = api.get("/datasets").json()["pagination"]["total_records"]
    good = {"type": "sql", "name": "n", "source_id": source_id, "query": "SELECT 1 AS id"}
    cases = [
        ({**good, "type": "entity_resolution"}, "entity_resolution"),
        ({**good, "type": "python"}, "type"),
        ({k: v for k, v in good.items() if k != "type"}, "type"),
        ({**good, "source_id": "1"}, "source_id"),
        ({**good, "source_id": 987654}, "source_id"),
        ({**good, "name": ""}, "name"),
        ({**good, "query": "SELEC 1"}, "query"),
        ({**good, "description": 5}, "description"),
    ]
    for body, field in cases:
        response = api.post("/datasets", json=body)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["message"], (field, response.json())
    assert api.get("/datasets").json()["pagination"]["total_records"] == before
    assert api.get("/datasets/987654").status_code == 404
    assert api.delete(f"/sources/{source_id}").status_code == 200
