"""Mapping, field-name normalisation and coercion to destination field types."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from reflow.connectors.base import DestinationField
from reflow.engine.mapping import (
    arrow_type_for,
    auto_mappings,
    coerce,
    field_types,
    map_batch,
    normalize_name,
)


def _col(data: str, to: str, key: bool = False) -> dict:
    return {"from": {"type": "column", "data": data}, "to": to, "is_primary_identifier": key}


def test_map_batch_every_supported_kind() -> None:
    batch = pa.RecordBatch.from_pydict({"ID": [1, 2], "email": ["A@X.COM", "b@y.com"]})
    mappings = [
        _col("id", "id", key=True),  # case-insensitive source column
        {"from": {"type": "constant_value", "data": {"value": 7, "basic_type": "number"}},
         "to": "n"},
        {"from": {"type": "sync_metadata", "data": "sync_run_id"}, "to": "run"},
        {"from": {"type": "liquid_template",
                  "data": {"liquid_template": "{{ record['email'] | downcase }}"}}, "to": "e"},
    ]
    out = map_batch(batch, mappings, {"sync_run_id": 42})
    assert out.column_names == ["id", "n", "run", "e"]
    assert out.to_pydict() == {"id": [1, 2], "n": [7.0, 7.0], "run": [42, 42],
                               "e": ["a@x.com", "b@y.com"]}


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (None, "firstName_x"),
        ("match_source_names", "firstName_x"),
        ("lower_case", "firstname_x"),
        ("upper_case", "FIRSTNAME_X"),
        ("snake_case", "first_name_x"),
        ("camel_case", "firstNameX"),
        ("start_case", "First Name X"),
    ],
)
def test_normalize_name(style: str | None, expected: str) -> None:
    assert normalize_name("firstName_x", style) == expected


def test_auto_mappings_only_to_existing_fields() -> None:
    mappings = [_col("id", "id", key=True)]
    added, skipped = auto_mappings(
        mappings, ["ID", "Email", "plan", "secret"], ["id", "email", "plan"], "lower_case"
    )
    assert [(m["from"]["data"], m["to"]) for m in added] == [("Email", "email"), ("plan", "plan")]
    assert skipped == ["secret"]
    # A destination that creates fields on write takes every column.
    added, skipped = auto_mappings(mappings, ["id", "Plan Name"], None, "snake_case")
    assert [m["to"] for m in added] == ["plan_name"] and skipped == []


@pytest.mark.parametrize(
    ("dest_type", "arrow"),
    [
        ("integer", pa.int64()),
        ("bigint", pa.int64()),
        ("double precision", pa.float64()),
        ("numeric", pa.float64()),
        ("boolean", pa.bool_()),
        ("text", pa.string()),
        ("character varying", pa.string()),
        ("timestamp with time zone", pa.timestamp("us", tz="UTC")),
        ("timestamp without time zone", pa.timestamp("us")),
        ("date", pa.date32()),
        ("jsonb", None),
        ("interval", None),
        ("ARRAY", None),
    ],
)
def test_arrow_type_for(dest_type: str, arrow: pa.DataType | None) -> None:
    assert arrow_type_for(dest_type) == arrow


def test_coerce_isolates_rows_that_cannot_be_cast() -> None:
    table = pa.table({
        "id": ["1", "2", "3", "4"],
        "score": ["1.5", "abc", "2", None],
        "seen": ["2024-01-01T00:00:00Z", "2024-01-02 10:00", "2024-01-03", "never"],
        "note": [1, 2, 3, 4],
    })
    types = field_types([
        DestinationField("id", "id", "bigint"),
        DestinationField("score", "score", "double precision"),
        DestinationField("seen", "seen", "timestamp with time zone"),
        DestinationField("note", "note", "text"),
    ])
    out = coerce(table, types)
    assert out.valid.column("id").to_pylist() == [1, 3]
    assert out.valid.column("score").to_pylist() == [1.5, 2.0]
    assert out.valid.column("note").to_pylist() == ["1", "3"]
    assert out.valid.column("seen")[0].as_py() == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert out.invalid.column("id").to_pylist() == ["2", "4"]
    assert out.reasons == [
        "score: value 'abc' cannot be converted to double precision",
        "seen: value 'never' cannot be converted to timestamp with time zone",
    ]


def test_coerce_refuses_lossy_numbers() -> None:
    out = coerce(pa.table({"n": [1.0, 2.5]}), field_types([DestinationField("n", "n", "integer")]))
    assert out.valid.column("n").to_pylist() == [1]
    assert out.reasons == ["n: value 2.5 is not a whole number, so it cannot be integer"]


def test_coerce_casts_whole_numeric_text_to_integer_as_postgresql_does() -> None:
    table = pa.table({"n": ["6.00", "6.5", "-3", "seven", None]})
    out = coerce(table, field_types([DestinationField("n", "n", "integer")]))
    assert out.valid.column("n").to_pylist() == [6, -3, None]
    assert out.reasons == ["n: value '6.5' is not a whole number, so it cannot be integer",
                           "n: value 'seven' cannot be converted to integer"]


def test_coerce_without_types_is_identity() -> None:
    table = pa.table({"a": [1, 2]})
    out = coerce(table, {})
    assert out.valid.equals(table) and out.invalid.num_rows == 0


def test_exact_numeric_fields_keep_every_digit() -> None:
    big = 2**53 + 1
    table = pa.table({
        "amount": pa.array(["12345678901234567.123456789", "oops", None]),
        "id": pa.array([big, 1, 2], pa.int64()),
        "ratio": pa.array(["0.5", "1.25", None]),
    })
    coerced = coerce(table, {"amount": ("numeric", pa.float64()),
                             "id": ("NUMBER(38,0)", pa.float64()),
                             "ratio": ("double precision", pa.float64())})
    assert coerced.valid.column("amount").to_pylist() == ["12345678901234567.123456789", None]
    assert coerced.valid.column("id").to_pylist() == [big, 2]
    assert coerced.valid.column("ratio").to_pylist() == [0.5, None]
    assert coerced.reasons == ["amount: value 'oops' cannot be converted to numeric"]
