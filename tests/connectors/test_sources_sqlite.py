from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from reflow.connectors.base import TableRef
from reflow.connectors.errors import InvalidQuery
from reflow.connectors.registry import source_types
from reflow.connectors.sources.sqlite import SqliteConfig, SqliteSource
from reflow.connectors.testing import SEED_ROWS, SourceConformance

CREATE = (
    'CREATE TABLE "Seed Table" (id INTEGER PRIMARY KEY, name TEXT, amount REAL, active BOOLEAN)'
)


def _source(path: Path) -> SqliteSource:
    return SqliteSource(SqliteConfig.model_validate({"path": str(path)}))


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "warehouse.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(CREATE)
        conn.executemany(
            'INSERT INTO "Seed Table" VALUES (:id, :name, :amount, :active)', SEED_ROWS
        )
    conn.close()
    yield path


class TestSqliteSource(SourceConformance):
    @pytest.fixture
    def source(self, db_path: Path) -> SqliteSource:
        return _source(db_path)

    @pytest.fixture
    def bad_source(self, tmp_path: Path) -> SqliteSource:
        return _source(tmp_path / "no_such_file.sqlite")

    @pytest.fixture
    def seeded_table(self, db_path: Path) -> TableRef:
        return TableRef("main", "main", "Seed Table")


def test_registered() -> None:
    assert source_types()["sqlite"] is SqliteSource
    assert SqliteSource.label == "SQLite"


def test_missing_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "absent.sqlite"
    steps = _source(missing).test_connection()
    assert steps[0].status == "failed"
    assert not missing.exists()


def test_primary_key_and_unique_columns(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE u (a INTEGER, b TEXT UNIQUE, c TEXT, d TEXT, UNIQUE (c, d))")
    conn.close()
    columns = {
        c.name: c.unique for c in _source(db_path).list_columns(TableRef("main", "main", "u"))
    }
    assert columns == {"a": False, "b": True, "c": False, "d": False}
    pk = _source(db_path).list_columns(TableRef("main", "main", "Seed Table"))
    assert [c.name for c in pk if c.unique] == ["id"]


def test_mixed_storage_classes_share_one_schema_across_batches(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE m (v)")
        conn.executemany("INSERT INTO m VALUES (?)", [(None,), (1,), (2.5,), ("x",)])
    conn.close()
    batches = list(_source(db_path).read("SELECT v FROM m ORDER BY rowid", batch_size=1))
    assert {b.schema.field("v").type for b in batches} == {pa.string()}
    assert [r["v"] for b in batches for r in b.to_pylist()] == [None, "1", "2.5", "x"]


def test_numbers_stay_numbers(db_path: Path) -> None:
    batch = next(_source(db_path).read('SELECT id, amount FROM "Seed Table"'))
    assert batch.schema.field("id").type == pa.int64()
    assert batch.schema.field("amount").type == pa.float64()


def test_read_of_a_bad_query_is_invalid_query(db_path: Path) -> None:
    with pytest.raises(InvalidQuery, match="no such table"):
        list(_source(db_path).read("SELECT * FROM nope"))


def test_schema_marks_no_secret_and_details_echo_the_path(db_path: Path) -> None:
    schema = SqliteConfig.model_json_schema()
    assert schema["required"] == ["path"]
    assert not any(p.get("writeOnly") for p in schema["properties"].values())
    config = SqliteConfig.model_validate({"path": str(db_path), "extra": "ignored"})
    assert config.connection_details() == {"path": str(db_path)}
    assert config.identifying_value() == str(db_path)
