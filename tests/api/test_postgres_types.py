"""Values of PostgreSQL types without an Arrow counterpart (JSON, UUID, arrays, enums,
intervals, bounded varchar) travel as text and land in columns of those types, through
both diff strategies; a value too long for its varchar(n) is rejected, not truncated."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.api.syncing import col, connections, create_sync, model, records, rows, run

COLUMNS = ("id", "doc", "uid", "tags", "mood", "span", "code")


@pytest.mark.parametrize("sync_engine", ["advanced", "basic"])
def test_types_without_an_arrow_counterpart_round_trip(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str,
    sync_engine: str,
) -> None:
    schema = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TYPE {schema}.mood AS ENUM ('sad', 'happy')")
    definition = (f"(id int PRIMARY KEY, doc jsonb, uid uuid, tags int[], mood {schema}.mood,"
                  " span interval, code {})")
    pg_conn.execute(f"CREATE TABLE {schema}.src {definition.format('text')}")
    pg_conn.execute(f"CREATE TABLE {schema}.dst {definition.format('varchar(3)')}")
    pg_conn.execute(
        f"INSERT INTO {schema}.src VALUES"
        """ (1, '{"a": [1, "x"]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,2}', 'happy',"""
        " '1 day 02:00', 'abc'),"
        " (2, NULL, NULL, NULL, NULL, NULL, NULL),"
        " (3, '[]', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '{}', 'sad', '-3 hours', 'abcd')"
    )
    source_id, dest_id = connections(api, pg_database, sync_engine=sync_engine)
    model_id = model(api, source_id, f"SELECT {', '.join(COLUMNS)} FROM {schema}.src")
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.dst", "upsert",
                          [col(c, key=c == "id") for c in COLUMNS])
    result = run(api, sync_id)
    assert (result["status"], result["records_updated"], result["records_failed"]) == (
        "completed", 2, 1), result
    cols = ", ".join(COLUMNS)
    assert rows(pg_conn, f"SELECT {cols} FROM {schema}.dst ORDER BY id") == rows(
        pg_conn, f"SELECT {cols} FROM {schema}.src WHERE id < 3 ORDER BY id")
    rejected = records(api, result["id"], status="rejected")
    assert [r["identifier"] for r in rejected] == ["3"], rejected
    assert "too long" in rejected[0]["status_message"], rejected
