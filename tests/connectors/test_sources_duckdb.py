from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from reflow.connectors.base import TableRef
from reflow.connectors.errors import InvalidQuery, TerminalError
from reflow.connectors.registry import source_types
from reflow.connectors.sources.duckdb import DuckdbConfig, DuckdbSource
from reflow.connectors.testing import SEED_ROWS, SourceConformance

CREATE = (
    'CREATE TABLE "S Schema"."Seed Table"'
    " (id BIGINT PRIMARY KEY, name VARCHAR, amount DOUBLE, active BOOLEAN)"
)


def _source(path: Path) -> DuckdbSource:
    return DuckdbSource(DuckdbConfig.model_validate({"path": str(path)}))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    # The writer must be closed: DuckDB refuses a read-only open next to a writer.
    with duckdb.connect(str(path)) as conn:
        conn.execute('CREATE SCHEMA "S Schema"')
        conn.execute(CREATE)
        conn.executemany(
            'INSERT INTO "S Schema"."Seed Table" VALUES (?, ?, ?, ?)',
            [tuple(r.values()) for r in SEED_ROWS],
        )
    return path


class TestDuckdbSource(SourceConformance):
    @pytest.fixture
    def source(self, db_path: Path) -> DuckdbSource:
        return _source(db_path)

    @pytest.fixture
    def bad_source(self, tmp_path: Path) -> DuckdbSource:
        return _source(tmp_path / "no_such_file.duckdb")

    @pytest.fixture
    def seeded_table(self, db_path: Path) -> TableRef:
        return TableRef("warehouse", "S Schema", "Seed Table")


def test_registered() -> None:
    assert source_types()["duckdb"] is DuckdbSource
    assert DuckdbSource.label == "DuckDB"


def test_missing_file_is_terminal_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "absent.duckdb"
    with pytest.raises(TerminalError, match="does not exist"):
        _source(missing).list_tables()
    assert not missing.exists()


def test_unique_columns_are_single_column_keys(db_path: Path) -> None:
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("CREATE TABLE u (a INT, b INT UNIQUE, c INT, d INT, UNIQUE (c, d))")
    columns = _source(db_path).list_columns(TableRef("warehouse", "main", "u"))
    assert {c.name: c.unique for c in columns} == {"a": False, "b": True, "c": False, "d": False}
    seed = _source(db_path).list_columns(TableRef("warehouse", "S Schema", "Seed Table"))
    assert [c.name for c in seed if c.unique] == ["id"]


def test_native_types_and_batch_sizes(db_path: Path) -> None:
    sql = "SELECT range AS n, range * 0.5 AS half FROM range(5000)"
    batches = list(_source(db_path).read(sql, batch_size=1000))
    assert [b.num_rows for b in batches] == [1000] * 5
    assert batches[0].schema.field("n").type == pa.int64()
    assert pa.types.is_decimal(batches[0].schema.field("half").type)


def test_query_columns_reports_types(db_path: Path) -> None:
    cols = _source(db_path).query_columns('SELECT id, name FROM "S Schema"."Seed Table"')
    assert [(c.name, c.type) for c in cols] == [("id", "BIGINT"), ("name", "VARCHAR")]


def test_read_of_a_bad_query_is_invalid_query(db_path: Path) -> None:
    with pytest.raises(InvalidQuery, match="nope"):
        list(_source(db_path).read("SELECT * FROM nope"))


def test_schema_has_no_secret_and_details_echo_the_path(db_path: Path) -> None:
    schema = DuckdbConfig.model_json_schema()
    assert schema["required"] == ["path"]
    assert not any(p.get("writeOnly") for p in schema["properties"].values())
    config = DuckdbConfig.model_validate({"path": str(db_path)})
    assert config.connection_details() == {"path": str(db_path)}
