"""``iso``: ISO-8601 UTC with milliseconds (truncated) and ``Z``, as Census prints
them, whatever the value's zone; the same text ``strftime`` gave before the faster form."""

from __future__ import annotations

import datetime as dt
import random

from reflow.timestamps import iso


def _by_strftime(value: dt.datetime) -> str:
    value = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def test_as_strftime_wrote_it() -> None:
    rng = random.Random(15)
    zones = [None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
             dt.timezone(dt.timedelta(hours=-8)), dt.timezone(dt.timedelta(0), "GMT")]
    values = [dt.datetime(2026, 12, 3, 12, 0, 0), dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
              dt.datetime(1999, 12, 31, 23, 30, 0, 1000, tzinfo=zones[3]),
              dt.datetime(5, 1, 1, 0, 0, 0, 123456), dt.datetime(9999, 12, 31, 12, 0, 0),
              dt.datetime(999, 1, 1, 0, 0, 0, 5000, tzinfo=dt.UTC)]
    for _ in range(2000):
        values.append(dt.datetime(rng.randint(1000, 9998), rng.randint(1, 12), rng.randint(1, 28),
                                  rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                                  rng.choice([0, rng.randint(0, 999999)]),
                                  tzinfo=rng.choice(zones)))
    for value in values:
        assert iso(value) == _by_strftime(value), value
    assert iso(dt.datetime(2026, 1, 2, 3, 4, 5, 678999)) == "2026-01-02T03:04:05.678Z"
    assert iso(None) is None
