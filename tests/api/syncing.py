"""Helpers for tests that build syncs through the API against the local PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api.conftest import wait_for_run
from tests.conftest import pg_credentials


def col(data: str, to: str | None = None, *, key: bool = False) -> dict[str, Any]:
    return {"from": {"type": "column", "data": data}, "to": to or data,
            "is_primary_identifier": key}


def pg_source(
    api: httpx.Client, database: str, *, name: str = "Warehouse", sync_engine: str | None = None
) -> int:
    """A postgres source on ``database``, created through the API; its id."""
    extra = {"sync_engine": sync_engine} if sync_engine else {}
    source = api.post("/sources", json={"connection": {
        "type": "postgres", "name": name, "credentials": pg_credentials(database), **extra}})
    assert source.status_code == 201, source.text
    return int(source.json()["data"]["id"])


def connections(
    api: httpx.Client, database: str, sync_engine: str | None = None
) -> tuple[int, int]:
    """A postgres source and a postgres destination on ``database``."""
    source_id = pg_source(api, database, sync_engine=sync_engine)
    destination = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "name": "Target", "credentials": pg_credentials(database)}})
    assert destination.status_code == 201, destination.text
    return source_id, destination.json()["data"]["id"]


def model(api: httpx.Client, source_id: int, sql: str, name: str = "m") -> int:
    response = api.post(f"/sources/{source_id}/models", json={"name": name, "query": sql})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def sync_body(
    source_id: int, model_id: int, dest_id: int, obj: str, operation: str,
    mappings: list[dict[str, Any]], **extra: Any,
) -> dict[str, Any]:
    return {
        "operation": operation,
        "source_attributes": {"connection_id": source_id,
                              "object": {"type": "model", "id": model_id}},
        "destination_attributes": {"connection_id": dest_id, "object": obj},
        "mappings": mappings,
        **extra,
    }


def create_sync(api: httpx.Client, *args: Any, **extra: Any) -> int:
    response = api.post("/syncs", json=sync_body(*args, **extra))
    assert response.status_code == 200, response.text
    return response.json()["data"]["sync_id"]


def start(api: httpx.Client, sync_id: int, **body: Any) -> int:
    response = api.post(f"/syncs/{sync_id}/trigger", json=body or None)
    assert response.status_code == 200, response.text
    return response.json()["data"]["sync_run_id"]


def run(api: httpx.Client, sync_id: int, **body: Any) -> dict[str, Any]:
    result = wait_for_run(api, start(api, sync_id, **body))
    assert result["status"] == "completed", result
    return result


def rows(conn: psycopg.Connection, sql: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql).fetchall()


def records(api: httpx.Client, run_id: int, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"/sync_runs/{run_id}/records", params={"per_page": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]
