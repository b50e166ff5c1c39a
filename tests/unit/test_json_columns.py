"""JSON columns are read by orjson where it reads exactly what ``json.loads`` reads
(db/engine.py): values come back as the standard library gave them, big integers,
NaN and lone surrogates included, from text (SQLite) and bytes (psycopg)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sqlalchemy import JSON, column, select, table, text

from reflow.db.engine import json_loads, make_engine

DOCUMENTS = [
    '{"a": 1, "b": [1.5, -2, "x", null, true, false], "c": {"d": "\\u00e9\\ud83d\\ude00"}}',
    "123456789012345678901234567890",  # beyond 64 bits: orjson would give a float
    "[-9223372036854775809, 18446744073709551615, 9223372036854775807]",
    '{"big": 1234567890123456789012, "small": 1}',
    '"\\ud800"',  # a lone surrogate, which orjson refuses
    '{"a": 1, "a": 2}',
    "[1e308, 0.1, -0.0, 1E5]",
    "[]",
    '"digits in a string 12345678901234567890 stay a string"',
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_as_the_standard_library_reads_it(document: str) -> None:
    expected = json.loads(document)
    for given in (document, document.encode(), memoryview(document.encode())):
        value = json_loads(given)  # type: ignore[arg-type]
        assert value == expected and repr(value) == repr(expected)


def test_nan_and_infinity_as_json_reads_them() -> None:
    value = json_loads("[NaN, Infinity, -Infinity]")
    assert math.isnan(value[0]) and value[1:] == [math.inf, -math.inf]


def test_an_sqlite_json_column_comes_back_exact(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (v JSON)"))
            conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": DOCUMENTS[3]})
        with engine.connect() as conn:
            value = conn.scalar(select(column("v", JSON)).select_from(table("t")))
        assert value == {"big": 1234567890123456789012, "small": 1}
        assert isinstance(value["big"], int)
    finally:
        engine.dispose()
