"""The "Table" object type database destinations share (``/object_types``,
``object_creation_requests``): attributes, portable column types, DDL."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reflow.connectors.base import ObjectAttribute, ObjectType
from reflow.connectors.errors import TerminalError

#: Portable column types a caller picks from; each dialect maps them to its own.
COLUMN_TYPES: tuple[str, ...] = (
    "string",
    "integer",
    "bigint",
    "float",
    "decimal",
    "boolean",
    "date",
    "timestamp",
    "json",
)

POSTGRES_TYPES = {
    "string": "text",
    "integer": "integer",
    "bigint": "bigint",
    "float": "double precision",
    "decimal": "numeric",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
    "json": "jsonb",
}
SQLITE_TYPES = {
    "string": "TEXT",
    "integer": "INTEGER",
    "bigint": "INTEGER",
    "float": "REAL",
    "decimal": "NUMERIC",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "json": "TEXT",
}

_FIELD_ATTRIBUTES = (
    ObjectAttribute("name", "Column Name", "string", True, "Name of the new column."),
    ObjectAttribute(
        "type", "Column Type", "string", True, "Portable type of the column.", COLUMN_TYPES
    ),
    ObjectAttribute(
        "primary_key",
        "Primary Key",
        "boolean",
        False,
        "Part of the primary key (the sync key of upserts).",
    ),
)


def table_type(*, schema_hint: str | None) -> ObjectType:
    """``schema_hint`` is the default schema's name, or None when the system has none."""
    attributes = [
        ObjectAttribute("table_name", "Table Name", "string", True, "Name of the new table.")
    ]
    if schema_hint is not None:
        attributes.insert(
            0,
            ObjectAttribute(
                "schema",
                "Schema",
                "string",
                False,
                f"Schema of the new table; default {schema_hint}.",
            ),
        )
    return ObjectType("Table", tuple(attributes), _FIELD_ATTRIBUTES)


def create_table_sql(
    target: str,
    fields: list[Mapping[str, Any]],
    types: Mapping[str, str],
    quote: Callable[[str], str],
) -> str:
    """``CREATE TABLE`` for ``target`` (already quoted); raises ``TerminalError`` for
    duplicate or empty column names."""
    seen: set[str] = set()
    columns, keys = [], []
    for field in fields:
        name = str(field.get("name") or "").strip()
        if not name:
            raise TerminalError("every field needs a name")
        if name.lower() in seen:
            raise TerminalError(f"column {name!r} is given twice")
        seen.add(name.lower())
        kind = types[str(field.get("type") or "string")]
        key = bool(field.get("primary_key"))
        columns.append(f"{quote(name)} {kind}{' NOT NULL' if key else ''}")
        if key:
            keys.append(quote(name))
    if keys:
        columns.append(f"PRIMARY KEY ({', '.join(keys)})")
    return f"CREATE TABLE {target} ({', '.join(columns)})"
