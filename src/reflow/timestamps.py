"""Timestamps on the wire: ISO-8601 UTC with milliseconds and ``Z``, as Census prints them.

Kept outside ``reflow.api`` so services and the engine can format times without
importing the web stack."""

from __future__ import annotations

import datetime as dt


def iso(value: dt.datetime | None) -> str | None:
    """A naive value is UTC (SQLite gives naive values back). ``isoformat`` truncates to
    milliseconds as the format says, at a fraction of ``strftime``'s cost (a page of 25
    syncs formats a hundred of these); a year below 1000 keeps ``strftime``'s form."""
    if value is None:
        return None
    if value.tzinfo is not None:
        if value.utcoffset() == _ZERO and value.year >= 1000:
            # What PostgreSQL gives back in a UTC session: the text without "+00:00".
            return value.isoformat(timespec="milliseconds")[:-6] + "Z"
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if value.year < 1000:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.isoformat(timespec="milliseconds") + "Z"


_ZERO = dt.timedelta(0)


def utcnow() -> dt.datetime:
    """Now, timezone-aware in UTC (what the state database stores and the engine stamps)."""
    return dt.datetime.now(dt.UTC)
