from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from reflow.connectors.base import TableRef
from reflow.connectors.destinations.postgres import PostgresDestination
from reflow.connectors.sources.postgres import PostgresSource
from reflow.connectors.testing import SEED_ROWS, DestinationConformance, SourceConformance
from tests.conftest import pg_credentials

CREATE = 'CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount float8, active boolean)'


def _bad(database: str) -> dict[str, Any]:
    return dict(pg_credentials(database), user="no_such_role_x")


class TestPostgresSource(SourceConformance):
    @pytest.fixture
    def source(self, pg_database: str) -> PostgresSource:
        return PostgresSource(
            PostgresSource.config_model.model_validate(pg_credentials(pg_database))
        )

    @pytest.fixture
    def bad_source(self, pg_database: str) -> PostgresSource:
        return PostgresSource(PostgresSource.config_model.model_validate(_bad(pg_database)))

    @pytest.fixture
    def seeded_table(
        self, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
    ) -> TableRef:
        table = f'"{pg_schema}"."Seed Table"'
        pg_conn.execute(CREATE.format(t=table))
        with pg_conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%(id)s, %(name)s, %(amount)s, %(active)s)", SEED_ROWS
            )
        return TableRef(pg_database, pg_schema, "Seed Table")


class TestPostgresDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, pg_database: str) -> PostgresDestination:
        return PostgresDestination(
            PostgresDestination.config_model.model_validate(pg_credentials(pg_database))
        )

    @pytest.fixture
    def bad_destination(self, pg_database: str) -> PostgresDestination:
        return PostgresDestination(
            PostgresDestination.config_model.model_validate(_bad(pg_database))
        )

    @pytest.fixture
    def object_name(self, pg_conn: psycopg.Connection, pg_schema: str) -> str:
        pg_conn.execute(CREATE.format(t=f'"{pg_schema}".people'))
        return f"{pg_schema}.people"

    @pytest.fixture
    def read_back(
        self, pg_conn: psycopg.Connection, object_name: str
    ) -> Callable[[], list[dict[str, Any]]]:
        schema, table = object_name.split(".")

        def read() -> list[dict[str, Any]]:
            cur = pg_conn.cursor(row_factory=psycopg.rows.dict_row)
            return cur.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()

        return read
