"""Redshift speaks the PostgreSQL protocol, so the local PostgreSQL stands in for it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from reflow.connectors.base import TableRef
from reflow.connectors.errors import InvalidQuery
from reflow.connectors.registry import source_types
from reflow.connectors.sources.postgres import PostgresSource
from reflow.connectors.sources.redshift import RedshiftConfig, RedshiftSource
from reflow.connectors.testing import SEED_ROWS, SourceConformance
from tests.conftest import pg_credentials

CREATE = "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount float8, active boolean)"


def _source(database: str, **overrides: Any) -> RedshiftSource:
    return RedshiftSource(RedshiftConfig.model_validate(pg_credentials(database) | overrides))


def _is_secret(prop: dict[str, Any]) -> bool:
    """writeOnly + format password, directly or on the non-null branch of an optional."""
    branches = [prop, *prop.get("anyOf", [])]
    return any(b.get("writeOnly") is True and b.get("format") == "password" for b in branches)


class TestRedshiftSource(SourceConformance):
    @pytest.fixture
    def source(self, pg_database: str) -> RedshiftSource:
        return _source(pg_database)

    @pytest.fixture
    def bad_source(self, pg_database: str) -> RedshiftSource:
        return _source(pg_database, user="no_such_role_x")

    @pytest.fixture
    def seeded_table(
        self, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
    ) -> TableRef:
        table = f'"{pg_schema}"."Seed Table"'
        pg_conn.execute(CREATE.format(t=table))
        with pg_conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%(id)s, %(name)s, %(amount)s, %(active)s)",
                SEED_ROWS,
            )
        return TableRef(pg_database, pg_schema, "Seed Table")


def test_registered_as_a_postgres_dialect() -> None:
    assert source_types()["redshift"] is RedshiftSource
    assert issubclass(RedshiftSource, PostgresSource)
    assert RedshiftSource.label == "Redshift"


def test_port_defaults_to_5439_and_census_strings_are_coerced() -> None:
    creds = {
        "hostname": "c.x.redshift.amazonaws.com",
        "user": "u",
        "password": "p",
        "database": "d",
    }
    assert RedshiftConfig.model_validate(creds).port == 5439
    assert RedshiftConfig.model_validate(creds | {"port": "5440"}).port == 5440
    assert RedshiftConfig.model_json_schema()["properties"]["port"]["default"] == 5439


def test_schema_marks_the_password_secret_and_details_hide_it() -> None:
    schema = RedshiftConfig.model_json_schema()
    assert [k for k, v in schema["properties"].items() if _is_secret(v)] == ["password"]
    creds = {
        "hostname": "c.x.redshift.amazonaws.com",
        "port": "5439",
        "user": "u",
        "password": "redshift_password",
        "database": "demo",
    }
    config = RedshiftConfig.model_validate(creds)
    # Census echoes exactly the non-secret keys it was given (connection-settings §3.2).
    assert {"hostname", "port", "database", "user"} <= set(config.connection_details())
    assert "password" not in config.connection_details()
    assert "redshift_password" not in repr(config.connection_details())
    assert config.identifying_value() == "c.x.redshift.amazonaws.com"


def test_rows_stream_through_a_cursor_with_arrow_types(pg_database: str) -> None:
    sql = (
        "SELECT n::int8 AS n, (n * 0.5)::numeric(10,1) AS half, DATE '2024-02-29' AS day,"
        " '{\"a\": 1}'::jsonb AS doc FROM generate_series(1, 5) AS n"
    )
    batches = list(_source(pg_database).read(sql, batch_size=2))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    assert batches[0].schema.field("n").type == pa.int64()
    assert batches[0].schema.field("day").type == pa.date32()
    assert batches[0].to_pylist()[0] == {
        "n": 1,
        "half": str(Decimal("0.5")),
        "day": dt.date(2024, 2, 29),
        "doc": '{"a": 1}',
    }


def test_read_of_a_bad_query_is_invalid_query(pg_database: str) -> None:
    with pytest.raises(InvalidQuery, match="no_such_table"):
        list(_source(pg_database).read("SELECT * FROM no_such_table"))
