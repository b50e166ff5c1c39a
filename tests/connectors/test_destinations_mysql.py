from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pymysql
import pymysql.cursors
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.mysql import MySQLDestination
from reflow.connectors.errors import BatchRejected, ObjectNotFound, TerminalError
from reflow.connectors.testing import DestinationConformance, seed_batch
from tests.conftest import require_service, unique_name

HOST, PORT = "127.0.0.1", 3306
CREATE = (
    "CREATE TABLE {t} (id BIGINT PRIMARY KEY, name TEXT, amount DOUBLE, active BOOLEAN)"
    " DEFAULT CHARSET = utf8mb4"
)


def _admin(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=HOST,
        port=PORT,
        user="root",
        password="",
        database=database,
        autocommit=True,
        charset="utf8mb4",
        cursorclass=pymysql.cursors.DictCursor,
    )


def _credentials(database: str, user: str = "root", password: str = "") -> dict[str, Any]:
    return {
        "hostname": HOST,
        "port": PORT,
        "user": user,
        "password": password,
        "database": database,
    }


def _destination(database: str, **kw: str) -> MySQLDestination:
    return MySQLDestination(
        MySQLDestination.config_model.model_validate(_credentials(database, **kw))
    )


@pytest.fixture(scope="module")
def my_database() -> Iterator[str]:
    require_service("MariaDB", PORT)
    name = unique_name("reflow_test")
    with _admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.local_infile AS on_")
        if not int(cur.fetchone()["on_"]):
            # The bulk path needs it; the brief allows the fixture to enable it.
            cur.execute("SET GLOBAL local_infile = 1")
        cur.execute(f"CREATE DATABASE `{name}`")
    yield name
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def my_conn(my_database: str) -> Iterator[pymysql.Connection]:
    with _admin(my_database) as conn:
        yield conn


@pytest.fixture
def sql(my_conn: pymysql.Connection) -> Callable[..., list[dict[str, Any]]]:
    def run(statement: str, args: Any = None) -> list[dict[str, Any]]:
        with my_conn.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())

    return run


@pytest.fixture
def table(sql: Callable[..., Any]) -> Iterator[str]:
    name = unique_name("people")
    yield name
    sql(f"DROP TABLE IF EXISTS `{name}`")


class TestMySQLDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, my_database: str) -> MySQLDestination:
        return _destination(my_database)

    @pytest.fixture
    def bad_destination(self, my_database: str) -> MySQLDestination:
        return _destination(my_database, user="no_such_user_x", password="nope")

    @pytest.fixture
    def object_name(self, sql: Callable[..., Any], table: str, my_database: str) -> str:
        sql(CREATE.format(t=f"`{table}`"))
        return f"{my_database}.{table}"

    @pytest.fixture
    def read_back(
        self, sql: Callable[..., list[dict[str, Any]]], table: str
    ) -> Callable[[], list[dict[str, Any]]]:
        return lambda: sql(f"SELECT * FROM `{table}`")


def _write(dest: MySQLDestination, table: str, batch: pa.RecordBatch, action: str) -> None:
    ctx = WriteContext(1, 1, table, "id", tuple(batch.schema.names))
    writer = dest.open_writer(ctx)
    try:
        writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": 1, "code": "abc"}, {"id": 2, "code": "too long"}], "code"),
        ([{"id": 1, "qty": "7"}, {"id": 2, "qty": "not a number"}], "qty"),
    ],
)
def test_value_the_column_cannot_take_rejects_the_batch(
    sql: Callable[..., list[dict[str, Any]]],
    table: str,
    my_database: str,
    rows: list[dict[str, Any]],
    message: str,
) -> None:
    sql(f"CREATE TABLE `{table}` (id BIGINT PRIMARY KEY, code VARCHAR(3), qty INT)")
    sql(f"INSERT INTO `{table}` VALUES (1, 'old', 5)")
    batch = pa.RecordBatch.from_pylist(rows)
    with pytest.raises(BatchRejected, match=message):
        _write(_destination(my_database), table, batch, "upsert")
    assert sql(f"SELECT * FROM `{table}`") == [{"id": 1, "code": "old", "qty": 5}]


def test_bare_name_is_in_the_configured_database(
    sql: Callable[..., list[dict[str, Any]]], table: str, my_database: str
) -> None:
    sql(
        f"CREATE TABLE `{table}` (id INT PRIMARY KEY, b VARCHAR(9) UNIQUE, c INT, d INT,"
        " UNIQUE (c, d))"
    )
    obj = _destination(my_database).get_object(table)
    assert obj.full_name == f"{my_database}.{table}"
    assert {f.full_name: f.identifier for f in obj.fields} == {
        "id": True,
        "b": True,
        "c": False,
        "d": False,
    }


@pytest.fixture
def reader(my_database: str, table: str, sql: Callable[..., Any]) -> Iterator[dict[str, str]]:
    """A user that may read the table but not write it."""
    user, password = unique_name("ro"), "ro-pass"
    sql(f"CREATE TABLE `{table}` (id BIGINT PRIMARY KEY, name TEXT)")
    sql("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
    sql(f"GRANT SELECT ON `{my_database}`.`{table}` TO %s@'%%'", (user,))
    sql(f"GRANT CREATE TEMPORARY TABLES ON `{my_database}`.* TO %s@'%%'", (user,))
    yield {"user": user, "password": password}
    sql("DROP USER %s@'%%'", (user,))


def test_read_only_table_is_not_an_object_and_writing_it_is_terminal(
    reader: dict[str, str], my_database: str, table: str, sql: Callable[..., Any]
) -> None:
    dest = _destination(my_database, **reader)
    assert table not in {o.full_name.split(".")[1] for o in dest.list_objects()}
    with pytest.raises(ObjectNotFound):
        dest.get_object(table)
    with pytest.raises(TerminalError, match="denied"):
        _write(dest, table, seed_batch().select(["id", "name"]), "upsert")
    assert sql(f"SELECT * FROM `{table}`") == []


@pytest.mark.parametrize("action", ["upsert", "update"])
def test_nulls_kept_and_values_preserved(
    sql: Callable[..., list[dict[str, Any]]], table: str, my_database: str, action: str
) -> None:
    sql(f"CREATE TABLE `{table}` (id BIGINT PRIMARY KEY, nickname TEXT, plan TEXT)")
    sql(f"INSERT INTO `{table}` VALUES (1, 'old1', NULL), (2, 'old2', 'keep'),"
        " (3, 'old3', 'keep')")
    batch = pa.RecordBatch.from_pylist([
        {"id": 1, "nickname": None, "plan": "pro"}, {"id": 2, "nickname": "new2", "plan": "pro"},
        {"id": 3, "nickname": None, "plan": None}, {"id": 4, "nickname": None, "plan": "free"},
    ], schema=pa.schema([("id", pa.int64()), ("nickname", pa.string()), ("plan", pa.string())]))
    ctx = WriteContext(1, 1, f"{my_database}.{table}", "id", tuple(batch.schema.names),
                       keep_on_null=frozenset({"nickname"}), set_if_empty=frozenset({"plan"}))
    writer = _destination(my_database).open_writer(ctx)
    try:
        writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()
    expected = [(1, "old1", "pro"), (2, "new2", "keep"), (3, "old3", "keep")]
    if action == "upsert":
        expected.append((4, None, "free"))
    got = sql(f"SELECT id, nickname, plan FROM `{table}` ORDER BY id")
    assert [(r["id"], r["nickname"], r["plan"]) for r in got] == expected
