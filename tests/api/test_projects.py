"""dbt projects over the real API: a project directory whose target/manifest.json
(written by the test) lists models; they become models of a PostgreSQL source that a
sync reads; refresh reconciles them and reports failures (424)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.api.conftest import wait_for_run
from tests.conftest import pg_credentials


def _node(database: str, schema: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "resource_type": "model",
        "name": name,
        "database": database,
        "schema": schema,
        "alias": extra.pop("alias", name),
        "description": extra.pop("description", ""),
        "config": {"materialized": extra.pop("materialized", "table")},
        "compiled_code": f"select * from raw_{name}",
        **extra,
    }


def _write(project: Path, nodes: dict[str, Any] | str) -> None:
    (project / "target").mkdir(parents=True, exist_ok=True)
    text = nodes if isinstance(nodes, str) else json.dumps({"metadata": {}, "nodes": nodes})
    (project / "target" / "manifest.json").write_text(text)


def test_dbt_project_models_sync_and_refresh(
    api: httpx.Client,
    pg_conn: psycopg.Connection,
    pg_schema: str,
    pg_database: str,
    tmp_path: Path,
) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".dim_customers (id int, email text)')
    pg_conn.execute(
        f"INSERT INTO \"{pg_schema}\".dim_customers VALUES (1, 'a@x.io'), (2, 'b@x.io')"
    )
    pg_conn.execute(f'CREATE VIEW "{pg_schema}"."Orders View" AS SELECT 1 AS order_id')
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".crm (id bigint PRIMARY KEY, email text)')
    source = api.post(
        "/sources",
        json={"connection": {"type": "postgres", "credentials": pg_credentials(pg_database)}},
    ).json()["data"]["id"]
    dest = api.post(
        "/destinations",
        json={
            "service_connection": {"type": "postgres", "credentials": pg_credentials(pg_database)}
        },
    ).json()["data"]["id"]
    project_dir = tmp_path / "shop"
    nodes = {
        "model.shop.dim_customers": _node(
            pg_database, pg_schema, "dim_customers", description="One row per customer"
        ),
        "model.shop.orders": _node(
            pg_database, pg_schema, "orders", alias="Orders View", materialized="view"
        ),
        "model.shop.stg": _node(pg_database, pg_schema, "stg", materialized="ephemeral"),
        "seed.shop.countries": {"resource_type": "seed", "name": "countries", "schema": pg_schema},
    }

    # bad input: 400 naming the field, nothing created
    project_path = f"/sources/{source}/projects"
    project_dir.mkdir()
    for body, field in (
        ({}, "path"),
        ({"path": "relative/dir"}, "path"),
        ({"path": str(tmp_path / "missing")}, "path"),
        ({"path": str(project_dir)}, "manifest.json"),
        ({"path": str(project_dir), "type": "looker"}, "type"),
    ):
        response = api.post(project_path, json=body)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["message"]
    assert api.get(project_path).json()["pagination"]["total_records"] == 0
    models_before = api.get(f"/sources/{source}/models").json()["pagination"]["total_records"]
    assert models_before == 0

    _write(project_dir, nodes)
    created = api.post(project_path, json={"path": str(project_dir), "name": "Shop"})
    assert created.status_code == 201, created.text
    project = created.json()["data"]
    assert (project["name"], project["type"], project["source_id"]) == ("Shop", "dbt", source)
    assert project["last_upgrade_attempt_error"] is False and project["latest_upgrade_at"]
    by_uid = {m["unique_id"]: m for m in project["models"]}
    assert set(by_uid) == {"model.shop.dim_customers", "model.shop.orders"}
    customers = by_uid["model.shop.dim_customers"]
    assert customers["query"] == f'SELECT * FROM "{pg_schema}"."dim_customers"'
    assert customers["compiled_query"] == "select * from raw_dim_customers"
    assert [c["name"] for c in customers["columns"]] == ["id", "email"]
    assert by_uid["model.shop.orders"]["query"] == f'SELECT * FROM "{pg_schema}"."Orders View"'
    model = api.get(f"/sources/{source}/models/{customers['id']}").json()["data"]
    assert (model["name"], model["description"]) == ("dim_customers", "One row per customer")
    listed = api.get(project_path).json()
    assert [p["id"] for p in listed["data"]] == [project["id"]]

    sync = api.post(
        "/syncs",
        json={
            "operation": "upsert",
            "source_attributes": {
                "connection_id": source,
                "object": {"type": "model", "id": customers["id"]},
            },
            "destination_attributes": {"connection_id": dest, "object": f"{pg_schema}.crm"},
            "mappings": [
                {
                    "from": {"type": "column", "data": "id"},
                    "to": "id",
                    "is_primary_identifier": True,
                },
                {"from": {"type": "column", "data": "email"}, "to": "email"},
            ],
        },
    )
    assert sync.status_code == 200, sync.text
    run = api.post(f"/syncs/{sync.json()['data']['sync_id']}/trigger").json()["data"]
    assert wait_for_run(api, run["sync_run_id"])["status"] == "completed"
    rows = pg_conn.execute(f'SELECT id, email FROM "{pg_schema}".crm ORDER BY id').fetchall()
    assert rows == [(1, "a@x.io"), (2, "b@x.io")]

    # the manifest changes: orders leaves, a description changes, a model not built yet joins
    del nodes["model.shop.orders"]
    nodes["model.shop.dim_customers"]["description"] = "Customers v2"
    nodes["model.shop.new"] = _node(pg_database, pg_schema, "not_built_yet")
    _write(project_dir, nodes)
    refreshed = api.post(f"/projects/{project['id']}/refresh")
    assert refreshed.status_code == 202 and set(refreshed.json()) == {"refresh_key"}
    key = refreshed.json()["refresh_key"]
    status = api.get(f"/projects/{project['id']}/refresh_status", params={"refresh_key": key})
    assert status.status_code == 200 and status.json()["status"] == "completed"
    assert status.json()["details"]["last_upgrade_attempt_error"] is False
    after = api.get(f"/projects/{project['id']}").json()["data"]
    by_uid = {m["unique_id"]: m for m in after["models"]}
    assert set(by_uid) == {"model.shop.dim_customers", "model.shop.new"}
    assert by_uid["model.shop.dim_customers"]["id"] == customers["id"]  # the sync keeps working
    assert by_uid["model.shop.new"]["columns"] == []
    assert "model.shop.new" in after["last_upgrade_attempt_output"]
    model = api.get(f"/sources/{source}/models/{customers['id']}").json()["data"]
    assert model["description"] == "Customers v2"
    assert (
        api.get(f"/sources/{source}/models/{by_uid['model.shop.dim_customers']['id']}").status_code
        == 200
    )

    # a broken manifest: the refresh fails (424), models are unchanged
    _write(project_dir, "{not json")
    failed_key = api.post(f"/projects/{project['id']}/refresh").json()["refresh_key"]
    failed = api.get(
        f"/projects/{project['id']}/refresh_status", params={"refresh_key": failed_key}
    )
    assert failed.status_code == 424 and failed.json()["status"] == "failed"
    assert failed.json()["details"]["last_upgrade_attempt_error"] is True
    assert "manifest.json" in failed.json()["details"]["last_upgrade_attempt_output"]
    kept = api.get(f"/projects/{project['id']}").json()["data"]["models"]
    assert {m["unique_id"] for m in kept} == {"model.shop.dim_customers", "model.shop.new"}

    status_path = f"/projects/{project['id']}/refresh_status"
    assert api.get(status_path).status_code == 400
    assert api.get(status_path, params={"refresh_key": "abc"}).status_code == 400
    assert api.get(status_path, params={"refresh_key": 99_999_999}).status_code == 404
    missing = api.post("/projects/99999999/refresh")
    assert missing.status_code == 404 and missing.json()["status"] == "not_found"
    assert (
        api.get("/projects/99999999/refresh_status", params={"refresh_key": 1}).status_code == 404
    )
    assert api.get("/sources/99999999/projects").status_code == 404
