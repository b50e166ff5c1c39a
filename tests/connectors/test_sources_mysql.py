from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pymysql
import pytest

from reflow.connectors.base import TableRef
from reflow.connectors.errors import InvalidQuery, TerminalError
from reflow.connectors.registry import source_types
from reflow.connectors.sources.mysql import MysqlConfig, MysqlSource
from reflow.connectors.testing import SEED_ROWS, SourceConformance
from tests.conftest import require_service, unique_name

HOST, PORT = "127.0.0.1", 3306

CREATE = (
    "CREATE TABLE `Seed Table` (id BIGINT PRIMARY KEY, name TEXT, amount DOUBLE, active BOOLEAN)"
)


def _credentials(database: str, **overrides: Any) -> dict[str, Any]:
    creds = {"hostname": HOST, "port": PORT, "user": "root", "password": "", "database": database}
    return creds | overrides


def _source(database: str, **overrides: Any) -> MysqlSource:
    return MysqlSource(MysqlConfig.model_validate(_credentials(database, **overrides)))


@pytest.fixture(scope="module")
def mysql_database() -> Iterator[str]:
    require_service("MariaDB", PORT)
    name = unique_name("reflow_test")
    admin = pymysql.connect(host=HOST, port=PORT, user="root", password="", autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield name
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


@pytest.fixture
def mysql_conn(mysql_database: str) -> Iterator[Any]:
    conn = pymysql.connect(
        host=HOST,
        port=PORT,
        user="root",
        password="",
        database=mysql_database,
        autocommit=True,
        charset="utf8mb4",
    )
    yield conn
    conn.close()


@pytest.fixture
def seeded(mysql_conn: Any, mysql_database: str) -> Iterator[TableRef]:
    with mysql_conn.cursor() as cur:
        cur.execute(CREATE)
        cur.executemany(
            "INSERT INTO `Seed Table` VALUES (%(id)s, %(name)s, %(amount)s, %(active)s)",
            SEED_ROWS,
        )
    yield TableRef("def", mysql_database, "Seed Table")
    with mysql_conn.cursor() as cur:
        cur.execute("DROP TABLE `Seed Table`")


def _is_secret(prop: dict[str, Any]) -> bool:
    """writeOnly + format password, directly or on the non-null branch of an optional."""
    branches = [prop, *prop.get("anyOf", [])]
    return any(b.get("writeOnly") is True and b.get("format") == "password" for b in branches)


class TestMysqlSource(SourceConformance):
    @pytest.fixture
    def source(self, mysql_database: str) -> MysqlSource:
        return _source(mysql_database)

    @pytest.fixture
    def bad_source(self, mysql_database: str) -> MysqlSource:
        return _source(mysql_database, user="no_such_user_x", password="wrong")

    @pytest.fixture
    def seeded_table(self, seeded: TableRef) -> TableRef:
        return seeded


def test_registered() -> None:
    assert source_types()["mysql"] is MysqlSource
    assert MysqlSource.label == "MySQL"
    assert MysqlSource.capabilities.supports_bookkeeping is False


def test_bad_credentials_are_terminal_with_the_servers_message(mysql_database: str) -> None:
    with pytest.raises(TerminalError, match="Access denied"):
        _source(mysql_database, user="no_such_user_x").list_tables()


def test_steps_of_a_good_connection(mysql_database: str) -> None:
    steps = _source(mysql_database).test_connection()
    assert [(s.step, s.status) for s in steps] == [
        ("Verify connectivity", "success"),
        ("Verify read access", "success"),
    ]


def test_unique_means_a_single_column_key(mysql_conn: Any, seeded: TableRef) -> None:
    with mysql_conn.cursor() as cur:
        cur.execute("CREATE TABLE u (a INT, b INT UNIQUE, c INT, d INT, UNIQUE KEY (c, d))")
    columns = _source(seeded.schema).list_columns(TableRef("def", seeded.schema, "u"))
    assert {c.name: c.unique for c in columns} == {"a": False, "b": True, "c": False, "d": False}
    seed = _source(seeded.schema).list_columns(seeded)
    assert [c.name for c in seed if c.unique] == ["id"]
    with mysql_conn.cursor() as cur:
        cur.execute("DROP TABLE u")


def test_types_travel_as_arrow_types(mysql_database: str) -> None:
    sql = (
        "SELECT CAST(12.50 AS DECIMAL(10,2)) AS d, CAST('2024-02-29' AS DATE) AS day,"
        " CAST('2024-02-29 10:11:12.5' AS DATETIME(6)) AS ts, CAST('-30:00:00' AS TIME) AS t,"
        " x'00ff' AS raw, CAST(18446744073709551615 AS UNSIGNED) AS big"
    )
    (batch,) = list(_source(mysql_database).read(sql))
    assert batch.schema.field("d").type == pa.decimal128(10, 2)
    assert batch.to_pylist() == [
        {
            "d": Decimal("12.50"),
            "day": dt.date(2024, 2, 29),
            "ts": dt.datetime(2024, 2, 29, 10, 11, 12, 500000),
            "t": dt.timedelta(hours=-30),
            "raw": b"\x00\xff",
            "big": 18446744073709551615,
        }
    ]


def test_read_only_transaction_refuses_writes_the_parser_allows(seeded: TableRef) -> None:
    # A SELECT that writes (a locking read is fine; this calls a writing function) is
    # refused by the transaction, not by the derived-table wrapper.
    source = _source(seeded.schema)
    with pytest.raises(InvalidQuery, match="(?i)read only"):
        list(source.read("SELECT * FROM `Seed Table` FOR UPDATE"))
    assert sum(b.num_rows for b in source.read(source.table_query(seeded))) == len(SEED_ROWS)


def test_statement_timeout_is_set(mysql_database: str) -> None:
    conn = _source(mysql_database, statement_timeout_seconds=7)._connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@SESSION.max_statement_time")
            assert float(cur.fetchone()[0]) == 7.0
    finally:
        conn.close()


def test_query_columns_type_names(seeded: TableRef) -> None:
    source = _source(seeded.schema)
    cols = source.query_columns(f"SELECT id, name, amount FROM ({source.table_query(seeded)}) t")
    assert [(c.name, c.type) for c in cols] == [
        ("id", "longlong"),
        ("name", "blob"),
        ("amount", "double"),
    ]


def test_schema_marks_the_password_secret_and_details_hide_it() -> None:
    schema = MysqlConfig.model_json_schema()
    assert [k for k, v in schema["properties"].items() if _is_secret(v)] == ["password"]
    assert schema["properties"]["port"]["default"] == 3306
    config = MysqlConfig.model_validate(_credentials("db", password="hunter2", port="3307"))
    details = config.connection_details()
    assert "password" not in details
    assert "hunter2" not in repr(details)
    assert details["port"] == 3307
    assert config.identifying_value() == HOST


def test_bit_and_zero_dates(mysql_conn: Any, mysql_database: str) -> None:
    with mysql_conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")  # allows storing a zero date
        cur.execute("CREATE TABLE k (flags BIT(3), d DATE)")
        cur.execute("INSERT INTO k VALUES (b'101', '0000-00-00'), (NULL, '2024-01-02')")
    try:
        rows = [r for b in _source(mysql_database).read("SELECT * FROM k") for r in b.to_pylist()]
        assert rows == [{"flags": 5, "d": None}, {"flags": None, "d": dt.date(2024, 1, 2)}]
    finally:
        with mysql_conn.cursor() as cur:
            cur.execute("DROP TABLE k")
