from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.duckdb import DuckDBDestination
from reflow.connectors.errors import BatchRejected
from reflow.connectors.testing import SEED_ROWS, DestinationConformance, seed_batch

CREATE = "CREATE TABLE {t} (id BIGINT PRIMARY KEY, name VARCHAR, amount DOUBLE, active BOOLEAN)"


def _destination(path: Path | str) -> DuckDBDestination:
    return DuckDBDestination(DuckDBDestination.config_model.model_validate({"path": str(path)}))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "dest.duckdb"


@pytest.fixture
def run_sql(db_path: Path) -> Callable[..., list[dict[str, Any]]]:
    """Runs SQL on its own short-lived connection, as a second client would: the
    connector's writer holds the file while it is open."""

    def run(sql: str) -> list[dict[str, Any]]:
        with duckdb.connect(str(db_path)) as conn:
            cur = conn.execute(sql)
            if cur.description is None:
                return []
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    return run


class TestDuckDBDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, db_path: Path) -> DuckDBDestination:
        return _destination(db_path)

    @pytest.fixture
    def bad_destination(self, tmp_path: Path) -> DuckDBDestination:
        # The closest DuckDB has to bad credentials: a file that is not a database.
        bogus = tmp_path / "not_a_database.duckdb"
        bogus.write_text("this is not a DuckDB file\n" * 100)
        return _destination(bogus)

    @pytest.fixture
    def object_name(self, run_sql: Callable[..., Any]) -> str:
        run_sql("CREATE SCHEMA crm")
        run_sql(CREATE.format(t="crm.people"))
        return "crm.people"

    @pytest.fixture
    def read_back(
        self, run_sql: Callable[..., list[dict[str, Any]]], object_name: str
    ) -> Callable[[], list[dict[str, Any]]]:
        return lambda: run_sql(f"SELECT * FROM {object_name}")


def _write(dest: DuckDBDestination, table: str, batch: pa.RecordBatch, action: str) -> None:
    ctx = WriteContext(1, 1, table, "id", tuple(batch.schema.names))
    writer = dest.open_writer(ctx)
    try:
        writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()


@pytest.mark.parametrize("action", ["upsert", "append"])
def test_value_the_column_cannot_take_rejects_the_batch(
    run_sql: Callable[..., list[dict[str, Any]]], db_path: Path, action: str
) -> None:
    run_sql("CREATE TABLE stock (id BIGINT PRIMARY KEY, qty INTEGER)")
    run_sql("INSERT INTO stock VALUES (1, 5)")
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "qty": "7"}, {"id": 2, "qty": "not a number"}],
        schema=pa.schema([("id", pa.int64()), ("qty", pa.string())]),
    )
    with pytest.raises(BatchRejected, match="not a number"):
        _write(_destination(db_path), "stock", batch, action)
    assert run_sql("SELECT * FROM main.stock") == [{"id": 1, "qty": 5}]


def test_bare_name_is_in_main_and_keys_are_identifiers(
    run_sql: Callable[..., list[dict[str, Any]]], db_path: Path
) -> None:
    run_sql(CREATE.format(t="people"))
    run_sql("CREATE TABLE t (a INTEGER, b VARCHAR UNIQUE, c VARCHAR, d VARCHAR, UNIQUE (c, d))")
    dest = _destination(db_path)
    assert dest.get_object("people").full_name == "main.people"
    obj = dest.get_object("main.t")
    assert {f.full_name: f.identifier for f in obj.fields} == {
        "a": False,
        "b": True,
        "c": False,
        "d": False,
    }
    _write(dest, "people", seed_batch(), "append")
    assert run_sql("SELECT count(*) AS n FROM people") == [{"n": len(SEED_ROWS)}]
