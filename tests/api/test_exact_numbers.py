"""Exact numbers arrive exact: a numeric amount with 27 digits and an id above 2**53
go from a PostgreSQL model into numeric columns without passing through float64."""

from __future__ import annotations

import decimal

import httpx
import psycopg
import pytest

from tests.api.syncing import col, connections, create_sync, model, rows, run


@pytest.mark.parametrize("sync_engine", ["advanced", "basic"])
def test_numeric_values_keep_every_digit(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str,
    sync_engine: str,
) -> None:
    table = f'"{pg_schema}".ledger_{sync_engine}'
    pg_conn.execute(f"CREATE TABLE {table}"
                    " (id numeric(38, 0) PRIMARY KEY, amount numeric(30, 10))")
    source_id, dest_id = connections(api, pg_database, sync_engine=sync_engine)
    model_id = model(api, source_id, "SELECT 9007199254740993::numeric(38, 0) AS id,"
                                     " 12345678901234567.123456789::numeric(30, 10) AS amount")
    sync_id = create_sync(api, source_id, model_id, dest_id,
                          f"{pg_schema}.ledger_{sync_engine}", "upsert",
                          [col("id", key=True), col("amount")])
    result = run(api, sync_id)
    assert (result["status"], result["records_updated"]) == ("completed", 1), result
    assert rows(pg_conn, f"SELECT id, amount FROM {table}") == [
        (decimal.Decimal("9007199254740993"), decimal.Decimal("12345678901234567.1234567890"))]
