"""Tables, columns, refreshes and the objects list of a source, through the real API
against real PostgreSQL (§4.6, §5, §6, §7)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api.polling import wait_refresh
from tests.api.syncing import pg_source
from tests.conftest import pg_credentials, unique_name


def _source(api: httpx.Client, database: str) -> int:
    return pg_source(api, database, name=unique_name("wh"))


def _mine(body: dict[str, Any], schema: str) -> list[dict[str, Any]]:
    return [t for t in body["data"] if t["table_schema"] == schema]


def test_tables_columns_and_refreshes(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    for name in ("customers", "customer_orders", "zebras"):
        pg_conn.execute(f'CREATE TABLE "{pg_schema}".{name} (id int PRIMARY KEY, email text)')
    source_id = _source(api, pg_database)

    refresh = api.post(f"/sources/{source_id}/refresh_tables")
    assert refresh.status_code == 200, refresh.text
    assert set(refresh.json()) == {"refresh_key"}  # bare, no envelope
    key = refresh.json()["refresh_key"]
    status = wait_refresh(api, f"/sources/{source_id}/refresh_tables_status", key)
    assert (status.status_code, status.json()) == (200, {"status": "completed"})

    listed = api.get(
        f"/sources/{source_id}/tables",
        params={"search": pg_schema.upper(), "order_by": "table_name:desc"},
    )
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["last_refreshed_at"].endswith("Z")
    assert [t["table_name"] for t in body["data"]] == ["zebras", "customers", "customer_orders"]
    assert body["data"][0] == {
        "table_catalog": pg_database,
        "table_schema": pg_schema,
        "table_name": "zebras",
    }
    both = api.get(
        f"/sources/{source_id}/tables",
        params={
            "search": "CUSTOMER",
            "order_by": "table_schema:asc,table_name:asc",
            "per_page": 100,
        },
    ).json()
    assert [t["table_name"] for t in _mine(both, pg_schema)] == ["customer_orders", "customers"]
    paged = api.get(
        f"/sources/{source_id}/tables", params={"search": pg_schema, "per_page": 2, "page": 2}
    ).json()
    assert paged["pagination"]["total_records"] == 3 and len(paged["data"]) == 1
    bad = api.get(f"/sources/{source_id}/tables", params={"order_by": "rows:desc"})
    assert bad.status_code == 400 and "order_by" in bad.json()["message"]

    locator = {"table_catalog": pg_database, "table_schema": pg_schema, "table_name": "customers"}
    missing = api.get(
        f"/sources/{source_id}/tables/columns",
        params={k: v for k, v in locator.items() if k != "table_name"},
    )
    assert missing.status_code == 400
    assert missing.json() == {"status": "error", "message": "table_name is required"}
    columns = api.get(f"/sources/{source_id}/tables/columns", params=locator).json()
    assert columns["data"] == [
        {"name": "id", "data_type": "integer", "can_be_upsert_key": True},
        {"name": "email", "data_type": "text", "can_be_upsert_key": False},
    ]
    assert columns["last_refreshed_at"].endswith("Z")
    unknown = api.get(
        f"/sources/{source_id}/tables/columns", params={**locator, "table_name": "nope"}
    )
    assert unknown.status_code == 404, unknown.text

    objects = api.get(f"/sources/{source_id}/objects", params={"per_page": 100}).json()
    table = next(
        o
        for o in objects["data"]
        if o["type"] == "table"
        and o["table_schema"] == pg_schema
        and o["table_name"] == "customers"
    )
    legacy = api.get(f"/sources/{source_id}/tables/{table['id']}").json()
    assert legacy["data"]["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "email", "type": "text"},
    ]

    pg_conn.execute(f'ALTER TABLE "{pg_schema}".customers ADD COLUMN score float8')
    cols = api.post(f"/sources/{source_id}/tables/{table['id']}/refresh_columns").json()
    status = wait_refresh(
        api,
        f"/sources/{source_id}/tables/{table['id']}/refresh_columns_status",
        cols["refresh_key"],
    )
    assert status.json() == {"status": "completed"}
    legacy = api.get(f"/sources/{source_id}/tables/{table['id']}").json()
    assert legacy["data"]["columns"][-1] == {"name": "score", "type": "double precision"}

    # a key of another refresh, a missing key, a garbage key
    wrong = api.get(
        f"/sources/{source_id}/refresh_tables_status", params={"refresh_key": cols["refresh_key"]}
    )
    assert wrong.status_code == 404
    assert api.get(f"/sources/{source_id}/refresh_tables_status").status_code == 400
    garbage = api.get(f"/sources/{source_id}/refresh_tables_status", params={"refresh_key": "x"})
    assert garbage.status_code == 400 and "refresh_key" in garbage.json()["message"]


def test_first_listing_starts_the_refresh(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".lonely (id int)')
    source_id = _source(api, pg_database)
    from tests.api.polling import wait_until

    def loaded() -> Any:
        body = api.get(f"/sources/{source_id}/tables", params={"search": pg_schema}).json()
        return body if body["data"] else None

    body = wait_until(loaded, "the first listing to load the tables")
    assert body["data"] == [
        {"table_catalog": pg_database, "table_schema": pg_schema, "table_name": "lonely"}
    ]
    assert body["last_refreshed_at"] is not None


def test_a_failed_refresh_reports_the_databases_message(api: httpx.Client) -> None:
    missing_db = unique_name("no_such_db")
    created = api.post(
        "/sources",
        json={
            "connection": {
                "type": "postgres",
                "name": unique_name("gone"),
                "credentials": pg_credentials(missing_db),
            }
        },
    )
    assert created.status_code == 201, created.text
    source_id = created.json()["data"]["id"]
    key = api.post(f"/sources/{source_id}/refresh_tables").json()["refresh_key"]
    status = wait_refresh(api, f"/sources/{source_id}/refresh_tables_status", key)
    assert status.status_code == 400
    assert status.json()["status"] == "failed"
    assert missing_db in status.json()["message"]
    assert api.delete(f"/sources/{source_id}").status_code == 200


def test_model_patch_returns_a_refresh_key_and_objects_list_everything(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".users (id int, email text, plan text)')
    source_id = _source(api, pg_database)
    model = api.post(
        f"/sources/{source_id}/models",
        json={"name": "Users", "query": f'SELECT id, email FROM "{pg_schema}".users'},
    ).json()["data"]
    patched = api.patch(
        f"/sources/{source_id}/models/{model['id']}",
        json={"query": f'SELECT id, email, plan FROM "{pg_schema}".users'},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "updated"
    key = patched.json()["refresh_key"]
    path = f"/sources/{source_id}/models/{model['id']}/refresh_columns_status"
    assert wait_refresh(api, path, key).json() == {"status": "completed"}
    again = api.post(f"/sources/{source_id}/models/{model['id']}/refresh_columns").json()
    assert wait_refresh(api, path, again["refresh_key"]).json() == {"status": "completed"}
    fetched = api.get(f"/sources/{source_id}/models/{model['id']}").json()["data"]
    assert [c["name"] for c in fetched["columns"]] == ["id", "email", "plan"]

    segment = api.post(
        f"/sources/{source_id}/filter_segments",
        json={
            "name": "Pro users",
            "dataset_id": model["id"],
            "molecules": [
                {
                    "attribute": "plan",
                    "attribute_type": "property",
                    "operator": "is",
                    "value": "pro",
                }
            ],
        },
    )
    assert segment.status_code == 201, segment.text

    key = api.post(f"/sources/{source_id}/refresh_tables").json()["refresh_key"]
    wait_refresh(api, f"/sources/{source_id}/refresh_tables_status", key)
    objects = api.get(f"/sources/{source_id}/objects", params={"per_page": 100, "order": "asc"})
    assert objects.status_code == 200
    data = objects.json()["data"]
    by_type = {o["type"]: o for o in data if o["type"] != "table" or o["table_schema"] == pg_schema}
    assert set(by_type) == {"table", "model", "segment"}
    assert set(by_type["table"]) == {"type", "id", "table_catalog", "table_schema", "table_name"}
    assert {
        "id",
        "name",
        "dataset_id",
        "description",
        "query",
        "created_at",
        "updated_at",
        "compiled_query",
        "columns",
        "dataset_id=",
        "source_object_id",
    } <= set(by_type["model"])
    assert {
        "id",
        "name",
        "model_id",
        "dataset_id",
        "query",
        "record_count",
        "created_at",
        "updated_at",
        "resource_identifier",
        "molecules",
        "filter_segment_source_object_id",
        "cohorts",
    } <= set(by_type["segment"])
    assert objects.json()["pagination"]["total_records"] == len(data)
    page = api.get(f"/sources/{source_id}/objects", params={"per_page": 1, "page": 2}).json()
    assert len(page["data"]) == 1 and page["pagination"]["total_records"] == len(data)

    conflict = api.delete(f"/sources/{source_id}/models/{model['id']}")
    assert conflict.status_code == 409 and "segments" in conflict.json()["message"]
    assert (
        api.delete(
            f"/sources/{source_id}/filter_segments/{segment.json()['data']['id']}"
        ).status_code
        == 200
    )
    assert api.delete(f"/sources/{source_id}/models/{model['id']}").status_code == 200
    assert api.delete(f"/sources/{source_id}").status_code == 200
