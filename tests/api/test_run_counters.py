"""Every row a run does not deliver is counted: a value its field cannot hold makes the
row invalid, in the run's ``records_invalid`` and in ``/metrics``; a whole numeric value
(``6.00``) goes into an integer field as PostgreSQL itself would cast it."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from tests.api.conftest import Server
from tests.api.syncing import col, connections, create_sync, model, records, rows, run


def _invalid_metric(server: Server) -> float:
    text = httpx.get(server.base_url + "/metrics", timeout=30).text
    match = re.search(r'^reflow_records_total\{outcome="invalid"\} (\S+)$', text, re.M)
    if match is None:
        match = re.search(r'^reflow_records\{outcome="invalid"\} (\S+)$', text, re.M)
    assert match is not None, text
    return float(match.group(1))


@pytest.mark.parametrize("sync_engine", ["advanced", "basic"])
def test_uncastable_rows_are_counted_invalid(
    server: Server, api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str,
    pg_database: str, sync_engine: str,
) -> None:
    table = f'"{pg_schema}".counted_{sync_engine}'
    pg_conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, qty integer)")
    source_id, dest_id = connections(api, pg_database, sync_engine=sync_engine)
    # 20 rows: ids 1..19 carry a fraction (6.5 cannot be an integer), id 20 is whole (6.00).
    model_id = model(api, source_id,
                     "SELECT g AS id, CASE WHEN g = 20 THEN 6.00 ELSE g + 0.5 END::numeric AS qty"
                     " FROM generate_series(1, 20) g")
    sync_id = create_sync(api, source_id, model_id, dest_id, f"{pg_schema}.counted_{sync_engine}",
                          "upsert", [col("id", key=True), col("qty")])
    before = _invalid_metric(server)
    result = run(api, sync_id)
    assert result["records_updated"] == 1, result
    assert result["records_invalid"] == 19, result
    assert rows(pg_conn, f"SELECT id, qty FROM {table}") == [(20, 6)]
    invalid = records(api, result["id"], status="invalid")
    assert len(invalid) == 19
    assert "qty" in invalid[0]["status_message"] and "whole" in invalid[0]["status_message"]
    assert _invalid_metric(server) - before == 19
