"""The HTTP destinations' bulk JSON rows (timestamps and dates formatted by Arrow) give
byte for byte the body that Python's own values give (``isoformat``), over every
timestamp unit, naive, UTC, fixed-offset and named zones, and the whole datetime range."""

from __future__ import annotations

import random

import pyarrow as pa

from reflow.connectors.destinations._sending import json_bytes, json_rows

DAY = 86_400_000_000
#: Years 1 to 9999, a day in from each end (a zone's offset must not leave the range).
MIN_US, MAX_US = -62_135_596_800_000_000 + DAY, 253_402_300_799_999_999 - DAY


def test_json_rows_match_python_values_byte_for_byte() -> None:
    rng = random.Random(15)
    values = [rng.randint(MIN_US, MAX_US) for _ in range(2000)]
    values += [0, 1, 999_999, 1_000_000, -1, MIN_US, MAX_US, None]
    columns = {}
    for tz in (None, "UTC", "+00:00", "-03:30", "Etc/UTC", "America/New_York", "Asia/Kolkata"):
        for unit, per in (("s", 1_000_000), ("ms", 1000), ("us", 1)):
            columns[f"{tz}_{unit}"] = pa.array(
                [None if v is None else v // per for v in values], pa.timestamp(unit, tz))
    columns["date32"] = pa.array(
        [None if v is None else v // 86_400_000_000 for v in values], pa.date32())
    columns["text"] = pa.array([None if v is None else f"é{v}\n" for v in values])
    batch = pa.RecordBatch.from_pydict(columns)
    assert json_bytes(json_rows(batch)) == json_bytes(batch.to_pylist())
