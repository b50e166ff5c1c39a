"""Timestamps on the wire: ISO-8601 UTC with milliseconds and ``Z``, as Census prints them.

Kept outside ``reflow.api`` so services and the engine can format times without
importing the web stack."""

from __future__ import annotations

import datetime as dt


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def utcnow() -> dt.datetime:
    """Now, timezone-aware in UTC (what the state database stores and the engine stamps)."""
    return dt.datetime.now(dt.UTC)
