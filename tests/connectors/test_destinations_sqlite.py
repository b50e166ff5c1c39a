from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.sqlite import SQLiteDestination
from reflow.connectors.errors import BatchRejected
from reflow.connectors.testing import SEED_ROWS, DestinationConformance, seed_batch

CREATE = "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, amount REAL, active BOOLEAN)"


def _destination(path: Path | str) -> SQLiteDestination:
    return SQLiteDestination(SQLiteDestination.config_model.model_validate({"path": str(path)}))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "dest.sqlite"


@pytest.fixture
def db(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


class TestSQLiteDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, db_path: Path) -> SQLiteDestination:
        return _destination(db_path)

    @pytest.fixture
    def bad_destination(self, tmp_path: Path) -> SQLiteDestination:
        # The closest SQLite has to bad credentials: a file it cannot open.
        return _destination(tmp_path / "no_such_dir" / "x.sqlite")

    @pytest.fixture
    def object_name(self, db: sqlite3.Connection) -> str:
        db.execute(CREATE)
        return "people"

    @pytest.fixture
    def read_back(
        self, db: sqlite3.Connection, object_name: str
    ) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [dict(r) for r in db.execute(f"SELECT * FROM {object_name}")]


def _write(dest: SQLiteDestination, table: str, batch: pa.RecordBatch, action: str) -> None:
    ctx = WriteContext(1, 1, table, "id", tuple(batch.schema.names))
    writer = dest.open_writer(ctx)
    try:
        writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()


def test_value_the_column_cannot_take_rejects_the_batch(
    db: sqlite3.Connection, db_path: Path
) -> None:
    # Only a STRICT table refuses text in an INTEGER column; others store it as is.
    db.execute("CREATE TABLE strict_people (id INTEGER PRIMARY KEY, qty INTEGER) STRICT")
    db.execute("INSERT INTO strict_people VALUES (1, 5)")
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "qty": "7"}, {"id": 2, "qty": "not a number"}],
        schema=pa.schema([("id", pa.int64()), ("qty", pa.string())]),
    )
    with pytest.raises(BatchRejected, match="strict_people.qty"):
        _write(_destination(db_path), "strict_people", batch, "upsert")
    assert [tuple(r) for r in db.execute("SELECT * FROM strict_people")] == [(1, 5)]


def test_main_prefix_names_the_same_table(db: sqlite3.Connection, db_path: Path) -> None:
    db.execute(CREATE)
    dest = _destination(db_path)
    obj = dest.get_object("main.people")
    assert obj.full_name == "people"
    assert [f.full_name for f in obj.fields if f.identifier] == ["id"]
    _write(dest, "main.people", seed_batch(), "append")
    assert db.execute("SELECT count(*) FROM people").fetchone()[0] == len(SEED_ROWS)


def test_single_column_unique_index_is_an_identifier(db: sqlite3.Connection, db_path: Path) -> None:
    db.execute("CREATE TABLE t (a INTEGER, b TEXT UNIQUE, c TEXT, d TEXT, UNIQUE (c, d))")
    obj = _destination(db_path).get_object("t")
    assert {f.full_name: f.identifier for f in obj.fields} == {
        "a": False,
        "b": True,
        "c": False,
        "d": False,
    }


def test_lookup_fills_a_foreign_key_from_the_parents_unique_field(
    db: sqlite3.Connection, db_path: Path
) -> None:
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, ext TEXT UNIQUE, name TEXT)")
    db.execute("INSERT INTO accounts VALUES (10, 'A-1', 'Acme'), (20, 'A-2', 'Beta')")
    db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT,"
               " account_id INTEGER REFERENCES accounts (id))")
    db.execute("INSERT INTO contacts VALUES (3, 'Old', 10)")
    dest = _destination(db_path)
    field = dest.get_object("contacts").field("account_id")
    assert field is not None and field.lookup_object == "accounts"
    assert type(dest).capabilities.lookups
    batch = pa.RecordBatch.from_pylist([
        {"id": 1, "name": "One", "account_id": "A-2"},
        {"id": 2, "name": "Two", "account_id": "A-9"},
        {"id": 3, "name": "Three", "account_id": None},
    ])
    ctx = WriteContext(1, 1, "contacts", "id", tuple(batch.schema.names),
                       lookups={"account_id": ("accounts", "ext")},
                       keep_on_null=frozenset({"account_id"}))
    writer = dest.open_writer(ctx)
    try:
        result = writer.write(batch, "upsert")
    finally:
        writer.close()
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, "account_id: no accounts with ext = 'A-9'")]
    assert [tuple(r) for r in db.execute("SELECT * FROM contacts ORDER BY id")] == [
        (1, "One", 20), (3, "Three", 10)]  # a null under sync_null_values: false kept 10
