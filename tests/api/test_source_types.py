"""Every source type through the API (issue 3, "Done when"): create the source (its
connection test passes), browse its tables and columns, define a model and a filter
segment over it, and read both by syncing them (upsert) into a PostgreSQL table.

Pinned to one state store (SQLite, a dedicated ``reflow serve`` for this module): what
is under test is each source type, which does not depend on where Reflow keeps its own
state, and the API suites already run against both stores."""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import pytest

from tests.api.conftest import Server, start_server, stop_server
from tests.api.polling import wait_refresh, wait_until
from tests.api.syncing import col, run
from tests.conftest import pg_credentials, require_service, unique_name
from tests.support.emulators import SNOWFLAKE_ENV, fakesnow_connect, fakesnow_endpoint

COLUMNS = ("id", "name", "plan", "score", "amount")
ROWS: list[tuple[Any, ...]] = [
    (1, "Ann", "pro", 90, 1.5),
    (2, "O'Brien", "pro", 10, 2.25),
    (3, "Zoë", "pro", 75, -0.5),
    (4, "Cy", "free", 99, 0.0),
    (5, "Di", None, 70, 10.125),
    (6, "Ed", "pro", 51, 7.75),
]
# plan = 'pro' AND score > 50
SEGMENT_IDS = (1, 3, 6)


@dataclass
class Kind:
    """One source type, seeded with ROWS in a table named ``people``."""

    type: str
    credentials: dict[str, Any]
    locator: dict[str, str]  # table_catalog, table_schema, table_name
    table_sql: str  # the table as the model's SQL names it
    types: tuple[str, ...]  # data_type of each column as /tables/columns reports it
    upper: bool = False  # the type reports unquoted names in upper case (Snowflake)

    def name(self, column: str) -> str:
        return column.upper() if self.upper else column


@pytest.fixture(scope="module")
def reflow() -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="reflow-source-types-"))
    server = start_server("sqlite", home, SNOWFLAKE_ENV)
    yield server
    stop_server(server)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def api(reflow: Server) -> Iterator[httpx.Client]:
    with reflow.client() as client:
        yield client


@pytest.fixture(scope="module")
def snowflake_endpoint() -> Iterator[str]:
    with fakesnow_endpoint() as endpoint:
        yield endpoint


# --- seeding each type ----------------------------------------------------------------


def _postgres(kind: str, request: pytest.FixtureRequest) -> Kind:
    conn: psycopg.Connection = request.getfixturevalue("pg_conn")
    schema: str = request.getfixturevalue("pg_schema")
    database: str = request.getfixturevalue("pg_database")
    conn.execute(
        f'CREATE TABLE "{schema}".people'
        " (id int PRIMARY KEY, name text, plan text, score int, amount float8)"
    )
    with conn.cursor() as cur:
        cur.executemany(f'INSERT INTO "{schema}".people VALUES (%s, %s, %s, %s, %s)', ROWS)
    # Redshift speaks the PostgreSQL protocol: the local server stands in for it.
    creds = pg_credentials(database) | ({"port": "5432"} if kind == "redshift" else {})
    locator = {"table_catalog": database, "table_schema": schema, "table_name": "people"}
    types = ("integer", "text", "text", "integer", "double precision")
    return Kind(kind, creds, locator, f'"{schema}".people', types)


def _mysql(request: pytest.FixtureRequest) -> Kind:
    require_service("MariaDB", 3306)
    database = unique_name("reflow_src")
    admin = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", autocommit=True, charset="utf8mb4"
    )
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(
            f"CREATE TABLE `{database}`.people (id INT PRIMARY KEY, name VARCHAR(100),"
            " plan VARCHAR(20), score INT, amount DOUBLE)"
        )
        cur.executemany(f"INSERT INTO `{database}`.people VALUES (%s, %s, %s, %s, %s)", ROWS)

    def drop() -> None:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()

    request.addfinalizer(drop)
    creds = {
        "hostname": "127.0.0.1",
        "port": 3306,
        "user": "root",
        "password": "",
        "database": database,
    }
    locator = {"table_catalog": "def", "table_schema": database, "table_name": "people"}
    types = ("int", "varchar(100)", "varchar(20)", "int", "double")
    return Kind("mysql", creds, locator, f"`{database}`.people", types)


def _sqlite(request: pytest.FixtureRequest) -> Kind:
    path = request.getfixturevalue("tmp_path") / "warehouse.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE people"
            " (id INTEGER PRIMARY KEY, name TEXT, plan TEXT, score INTEGER, amount REAL)"
        )
        conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)", ROWS)
    conn.close()
    locator = {"table_catalog": "main", "table_schema": "main", "table_name": "people"}
    types = ("INTEGER", "TEXT", "TEXT", "INTEGER", "REAL")
    return Kind("sqlite", {"path": str(path)}, locator, "people", types)


def _duckdb(request: pytest.FixtureRequest) -> Kind:
    import duckdb

    path = request.getfixturevalue("tmp_path") / "warehouse.duckdb"
    conn = duckdb.connect(str(path))
    try:
        conn.execute(
            "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR, plan VARCHAR,"
            " score INTEGER, amount DOUBLE)"
        )
        conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)", ROWS)
    finally:
        conn.close()  # the source opens the file read-only; no writer may hold it
    locator = {"table_catalog": "warehouse", "table_schema": "main", "table_name": "people"}
    types = ("INTEGER", "VARCHAR", "VARCHAR", "INTEGER", "DOUBLE")
    return Kind("duckdb", {"path": str(path)}, locator, "main.people", types)


def _snowflake(request: pytest.FixtureRequest) -> Kind:
    endpoint: str = request.getfixturevalue("snowflake_endpoint")
    database = unique_name("WH").upper()
    with fakesnow_connect(endpoint) as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"USE DATABASE {database}")
        cur.execute("CREATE SCHEMA S1")
        cur.execute(
            "CREATE TABLE S1.PEOPLE"
            " (ID INT PRIMARY KEY, NAME VARCHAR, PLAN VARCHAR, SCORE INT, AMOUNT FLOAT)"
        )
        cur.executemany("INSERT INTO S1.PEOPLE VALUES (%s, %s, %s, %s, %s)", ROWS)
    creds = {
        "account": "xy12345.us-east-1",
        "user": "REFLOW",
        "password": "s3cret-pw",
        "warehouse": "COMPUTE_WH",
        "database": database,
        "endpoint_url": endpoint,
        "login_timeout_seconds": 5,
    }
    locator = {"table_catalog": database, "table_schema": "S1", "table_name": "PEOPLE"}
    types = ("NUMBER", "TEXT", "TEXT", "NUMBER", "FLOAT")
    return Kind("snowflake", creds, locator, "S1.PEOPLE", types, upper=True)


SEEDERS: dict[str, Callable[[pytest.FixtureRequest], Kind]] = {
    "postgres": lambda request: _postgres("postgres", request),
    "redshift": lambda request: _postgres("redshift", request),
    "mysql": _mysql,
    "sqlite": _sqlite,
    "duckdb": _duckdb,
    "snowflake": _snowflake,
}


@pytest.fixture(params=sorted(SEEDERS))
def kind(request: pytest.FixtureRequest) -> Kind:
    return SEEDERS[request.param](request)


# --- the API steps ---------------------------------------------------------------------


def _create_source(api: httpx.Client, kind: Kind) -> int:
    name = unique_name(kind.type)
    response = api.post(
        "/sources",
        json={"connection": {"type": kind.type, "name": name, "credentials": kind.credentials}},
    )
    assert response.status_code == 201, response.text
    source = response.json()["data"]
    assert source["type"] == kind.type
    assert source["name"] == name
    assert source["last_test_succeeded"] is True, source["last_test_results"]
    assert "password" not in source["connection_details"]
    return source["id"]


def _browse(api: httpx.Client, source_id: int, kind: Kind) -> None:
    refresh = api.post(f"/sources/{source_id}/refresh_tables")
    assert refresh.status_code == 200, refresh.text
    status = wait_refresh(
        api, f"/sources/{source_id}/refresh_tables_status", refresh.json()["refresh_key"]
    )
    assert status.json() == {"status": "completed"}, status.text
    search = kind.locator["table_schema"] if kind.type != "sqlite" else "people"
    tables = api.get(f"/sources/{source_id}/tables", params={"search": search})
    assert tables.status_code == 200, tables.text
    assert tables.json()["data"] == [kind.locator]

    columns = api.get(f"/sources/{source_id}/tables/columns", params=kind.locator)
    assert columns.status_code == 200, columns.text
    listed = columns.json()["data"]
    assert [c["name"] for c in listed] == [kind.name(c) for c in COLUMNS]
    # the primary key is the only upsert key candidate; every column has a type
    assert [c["can_be_upsert_key"] for c in listed] == [True, False, False, False, False]
    # each type reports its own native type names (MariaDB adds a display width to int)
    types = tuple(re.sub(r"^int\(\d+\)$", "int", c["data_type"]) for c in listed)
    assert types == kind.types, listed


def _create_model(api: httpx.Client, source_id: int, kind: Kind) -> int:
    response = api.post(
        f"/sources/{source_id}/models",
        json={"name": unique_name("people"), "query": f"SELECT * FROM {kind.table_sql}"},
    )
    assert response.status_code == 201, response.text
    model = response.json()["data"]
    assert [c["name"] for c in model["columns"]] == [kind.name(c) for c in COLUMNS]
    return model["id"]


def _atom(attribute: str, operator: str, value: Any) -> dict[str, Any]:
    return {
        "attribute": attribute,
        "attribute_type": "property",
        "operator": operator,
        "value": value,
    }


def _create_segment(api: httpx.Client, source_id: int, model_id: int, kind: Kind) -> int:
    molecules = [
        _atom(kind.name("plan"), "is", "pro"),
        _atom(kind.name("score"), "greaterthan", 50),
    ]
    response = api.post(
        f"/sources/{source_id}/filter_segments",
        json={"name": unique_name("pros"), "molecules": molecules, "dataset_id": model_id},
    )
    assert response.status_code == 201, response.text
    segment_id = response.json()["data"]["id"]
    path = f"/sources/{source_id}/filter_segments/{segment_id}/source_status"

    def counted() -> Any:
        data = api.get(path).json()["data"]
        return data if data["creation_status"] else None

    status = wait_until(counted, f"segment {segment_id} to be counted")
    assert status["record_count"] == len(SEGMENT_IDS), (status.get("error"), status)
    return segment_id


def _sync(
    api: httpx.Client,
    source_id: int,
    source_object: dict[str, Any],
    dest_id: int,
    table: str,
    kind: Kind,
) -> int:
    mappings = [col(kind.name("id"), "id", key=True), *(col(kind.name(c), c) for c in COLUMNS[1:])]
    response = api.post(
        "/syncs",
        json={
            "operation": "upsert",
            "source_attributes": {"connection_id": source_id, **source_object},
            "destination_attributes": {"connection_id": dest_id, "object": table},
            "mappings": mappings,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["sync_id"]


def test_source_type_end_to_end(
    api: httpx.Client,
    kind: Kind,
    pg_conn: psycopg.Connection,
    pg_schema: str,
    pg_database: str,
) -> None:
    source_id = _create_source(api, kind)
    _browse(api, source_id, kind)
    model_id = _create_model(api, source_id, kind)
    segment_id = _create_segment(api, source_id, model_id, kind)

    for table in ("model_rows", "segment_rows"):
        pg_conn.execute(
            f'CREATE TABLE "{pg_schema}".{table} (id bigint PRIMARY KEY,'
            " name text, plan text, score bigint, amount float8)"
        )
    dest = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "postgres",
                "name": unique_name("pg"),
                "credentials": pg_credentials(pg_database),
            }
        },
    )
    assert dest.status_code == 201, dest.text
    dest_id = dest.json()["data"]["id"]

    model_sync = _sync(
        api,
        source_id,
        {"object": {"type": "model", "id": model_id}},
        dest_id,
        f"{pg_schema}.model_rows",
        kind,
    )
    segment_sync = _sync(
        api,
        source_id,
        {"filter_segment_id": segment_id, "object": {"type": "dataset", "id": model_id}},
        dest_id,
        f"{pg_schema}.segment_rows",
        kind,
    )

    model_run = run(api, model_sync)
    assert (
        model_run["source_record_count"],
        model_run["records_processed"],
        model_run["records_updated"],
        model_run["records_invalid"],
        model_run["records_failed"],
    ) == (len(ROWS), len(ROWS), len(ROWS), 0, 0), model_run
    segment_run = run(api, segment_sync)
    assert (
        segment_run["source_record_count"],
        segment_run["records_updated"],
        segment_run["records_failed"],
    ) == (3, 3, 0), segment_run

    arrived = pg_conn.execute(f'SELECT * FROM "{pg_schema}".model_rows ORDER BY id').fetchall()
    assert arrived == ROWS
    segment = pg_conn.execute(f'SELECT * FROM "{pg_schema}".segment_rows ORDER BY id').fetchall()
    assert segment == [r for r in ROWS if r[0] in SEGMENT_IDS]

    for sync_id in (model_sync, segment_sync):
        assert api.delete(f"/syncs/{sync_id}").status_code == 200
    assert api.delete(f"/sources/{source_id}/filter_segments/{segment_id}").status_code == 200
    assert api.delete(f"/destinations/{dest_id}").status_code == 200
    assert api.delete(f"/sources/{source_id}").status_code == 200
