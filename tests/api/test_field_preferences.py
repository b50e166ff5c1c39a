"""Per-mapping ``sync_null_values: false`` (a null leaves the record's value) and
``preserve_values: true`` (written only where the record's field is empty), through
the API into PostgreSQL and SQLite; refused with 400 where a destination cannot honour
them (DuckDB)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.syncing import col, connections, create_sync, model, rows, run, sync_body

SOURCE = """
    SELECT * FROM (VALUES (1, NULL, 'pro'), (2, 'new2', 'pro'), (3, NULL, NULL),
                          (4, NULL, 'free')) AS v(id, nickname, plan)
"""


EXISTING = "(1, 'old1', NULL), (2, 'old2', 'keep'), (3, 'old3', 'keep')"


def _expected(operation: str) -> list[tuple[Any, ...]]:
    expected = [
        (1, "old1", "pro"),  # null nickname kept the old one; empty plan was filled
        (2, "new2", "keep"),  # a value overwrites; an existing plan is preserved
        (3, "old3", "keep"),
    ]
    if operation == "upsert":
        expected.append((4, None, "free"))  # a new record takes the values as they are
    return expected


def _mappings() -> list[dict[str, Any]]:
    return [
        col("id", key=True),
        {**col("nickname"), "sync_null_values": False},
        {**col("plan"), "preserve_values": True},
    ]


@pytest.mark.parametrize("operation", ["upsert", "update"])
def test_nulls_kept_and_values_preserved(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str,
    operation: str,
) -> None:
    table = f'"{pg_schema}".people'
    pg_conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, nickname text, plan text)")
    pg_conn.execute(f"INSERT INTO {table} VALUES {EXISTING}")
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, SOURCE)
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.people", operation,
                          _mappings())
    stored = api.get(f"/syncs/{sync_id}").json()["data"]["mappings"]
    assert [(m["sync_null_values"], m["preserve_values"]) for m in stored] == [
        (True, False), (False, False), (True, True)]

    result = run(api, sync_id)
    assert result["status"] == "completed", result
    assert rows(pg_conn, f"SELECT * FROM {table} ORDER BY id") == _expected(operation)


@pytest.mark.parametrize("operation", ["upsert", "update"])
def test_nulls_kept_and_values_preserved_in_sqlite(
    api: httpx.Client, pg_database: str, tmp_path: Path, operation: str,
) -> None:
    path = tmp_path / "crm.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, nickname TEXT, plan TEXT)")
        conn.execute(f"INSERT INTO people VALUES {EXISTING}")
    conn.close()
    source_id, _ = connections(api, pg_database)
    dest = api.post("/destinations", json={"service_connection": {
        "type": "sqlite", "name": "Local", "credentials": {"path": str(path)}}})
    assert dest.status_code == 201, dest.text
    sync_id = create_sync(api, source_id, model(api, source_id, SOURCE),
                          dest.json()["data"]["id"], "people", operation, _mappings())
    assert run(api, sync_id)["status"] == "completed"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM people ORDER BY id").fetchall() == _expected(operation)
    conn.close()


def test_refused_where_the_destination_cannot_honour_them(
    api: httpx.Client, pg_database: str, tmp_path: Path
) -> None:
    import duckdb

    path = tmp_path / "crm.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, nickname TEXT, plan TEXT)")
    source_id, _ = connections(api, pg_database)
    dest = api.post("/destinations", json={"service_connection": {
        "type": "duckdb", "name": "Local", "credentials": {"path": str(path)}}})
    assert dest.status_code == 201, dest.text
    model_id = model(api, source_id, SOURCE)
    before = api.get("/syncs").json()["pagination"]["total_records"]

    for mappings, named in [
        ([col("id", key=True), {**col("nickname"), "sync_null_values": False}],
         "mappings[1].sync_null_values"),
        ([col("id", key=True), {**col("plan"), "preserve_values": True}],
         "mappings[1].preserve_values"),
        ([col("id", key=True), {**col("plan"), "preserve_values": "yes"}],
         "mappings[1].preserve_values must be a boolean"),
    ]:
        response = api.post("/syncs", json=sync_body(
            source_id, model_id, dest.json()["data"]["id"], "people", "upsert", mappings))
        assert response.status_code == 400, response.text
        assert named in response.json()["message"], response.json()
    assert api.get("/syncs").json()["pagination"]["total_records"] == before
