"""SQL text the database connectors share: identifier quoting per dialect, the
merge of a staged batch into its target table, and destination objects built
from catalog rows.

Each dialect's merge statements stay its own (``MergeDialect`` subclasses in the
destination modules); what is shared here is what every dialect computes the same
way: the quoted key, column lists and assignments, the plain ``INSERT ... SELECT``
of append, the ``MERGE INTO`` both DuckDB and Snowflake speak, and the refusal of
an action no dialect knows.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from reflow.connectors.base import (
    OPERATIONS,
    Action,
    DestinationField,
    DestinationObject,
    WriteContext,
)
from reflow.connectors.errors import TerminalError

Quote = Callable[[str], str]

#: A database table supports every Census operation (``mirror`` is upserts and deletes).
TABLE_OPERATIONS: tuple[str, ...] = OPERATIONS


def quote_double(name: str) -> str:
    """Standard SQL (PostgreSQL, SQLite, DuckDB, Snowflake): ``"`` doubled inside."""
    return '"' + name.replace('"', '""') + '"'


def quote_backtick(name: str) -> str:
    """MySQL and MariaDB: ````` doubled inside."""
    return "`" + name.replace("`", "``") + "`"


def column_list(columns: Iterable[str], quote: Quote) -> str:
    return ", ".join(quote(c) for c in columns)


def strip_statement(sql: str) -> str:
    """A model's SQL made fit to nest as a derived table (no trailing ``;``)."""
    return sql.strip().rstrip(";")


def unique_columns_sql(table_filter: str) -> str:
    """``information_schema`` query for the columns that alone make up a primary key
    or unique constraint of one table; ``table_filter`` selects it on ``tc``, with
    the driver's placeholders."""
    return f"""
    SELECT kcu.column_name
    FROM information_schema.table_constraints tc
    JOIN information_schema.key_column_usage kcu
      ON kcu.constraint_schema = tc.constraint_schema
     AND kcu.constraint_name = tc.constraint_name
     AND kcu.table_name = tc.table_name
    WHERE {table_filter}
      AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
      AND (SELECT count(*) FROM information_schema.key_column_usage k2
           WHERE k2.constraint_schema = tc.constraint_schema
             AND k2.constraint_name = tc.constraint_name
             AND k2.table_name = tc.table_name) = 1
"""


@dataclass(frozen=True)
class Merge:
    """The quoted pieces of one batch's merge from ``stage`` (a staging table or
    view holding the batch, aliased ``s``) into ``target`` (aliased ``t``)."""

    target: str
    stage: str
    key: str
    columns: tuple[str, ...]
    #: The columns other than the key: what an update assigns.
    others: tuple[str, ...]

    @classmethod
    def of(
        cls, target: str, stage: str, columns: Sequence[str], key_field: str, quote: Quote
    ) -> Merge:
        return cls(
            target=target,
            stage=stage,
            key=quote(key_field),
            columns=tuple(quote(c) for c in columns),
            others=tuple(quote(c) for c in columns if c != key_field),
        )

    @property
    def cols(self) -> str:
        return ", ".join(self.columns)

    def insert_select(self, tail: str = "") -> str:
        return f"INSERT INTO {self.target} ({self.cols}) SELECT {self.cols} FROM {self.stage}{tail}"

    def assignments(self, *, qualify: bool = False) -> str:
        """``c = s.c`` for the non-key columns; the key onto itself when there are
        none, so an update of a key-only batch is still a valid statement."""
        lhs = "t." if qualify else ""
        return ", ".join(f"{lhs}{c} = s.{c}" for c in self.others or (self.key,))

    def update_from(self) -> str:
        """``UPDATE ... FROM`` (SQLite, Snowflake, PostgreSQL)."""
        return (
            f"UPDATE {self.target} AS t SET {self.assignments()} FROM {self.stage} AS s"
            f" WHERE t.{self.key} = s.{self.key}"
        )

    def merge_into(self, *, when_matched: str | None, insert: bool) -> str:
        """``MERGE INTO`` (DuckDB, Snowflake): matches on the key, so the key needs no
        unique index."""
        clauses = [f"WHEN MATCHED THEN {when_matched}"] if when_matched else []
        if insert:
            values = ", ".join(f"s.{c}" for c in self.columns)
            clauses.append(f"WHEN NOT MATCHED THEN INSERT ({self.cols}) VALUES ({values})")
        return (
            f"MERGE INTO {self.target} AS t USING {self.stage} AS s"
            f" ON t.{self.key} = s.{self.key} " + " ".join(clauses)
        )

    def update_set(self) -> str | None:
        """``MERGE``'s ``UPDATE SET`` of the non-key columns; None when there are none."""
        if not self.others:
            return None
        return "UPDATE SET " + ", ".join(f"{c} = s.{c}" for c in self.others)


class MergeDialect(abc.ABC):
    """One statement per action merging a staged batch into its target table.

    Upsert, insert, update and delete are the dialect's own; append is a plain
    ``INSERT ... SELECT`` everywhere."""

    def statement(self, m: Merge, action: Action | str) -> str:
        build: dict[str, Callable[[Merge], str]] = {
            "upsert": self.upsert,
            "insert": self.insert,
            "append": self.append,
            "update": self.update,
            "delete": self.delete,
        }
        if action not in build:
            raise TerminalError(f"unsupported action {action!r}")
        return build[action](m)

    @abc.abstractmethod
    def upsert(self, m: Merge) -> str: ...

    @abc.abstractmethod
    def insert(self, m: Merge) -> str: ...

    @abc.abstractmethod
    def update(self, m: Merge) -> str: ...

    @abc.abstractmethod
    def delete(self, m: Merge) -> str: ...

    def append(self, m: Merge) -> str:
        return m.insert_select()


class CatalogColumn(NamedTuple):
    """One column of a writable table, as a destination's catalog query reads it."""

    schema: str
    table: str
    column: str
    type: str
    required: bool
    identifier: bool


def catalog_objects(columns: Iterable[CatalogColumn]) -> list[DestinationObject]:
    """Destination objects named ``schema.table``, fields in the catalog's order."""
    tables: dict[str, list[DestinationField]] = {}
    for c in columns:
        tables.setdefault(f"{c.schema}.{c.table}", []).append(
            DestinationField(
                full_name=c.column,
                label=c.column,
                type=c.type,
                required=c.required,
                identifier=c.identifier,
            )
        )
    return [
        DestinationObject(name, name, TABLE_OPERATIONS, tuple(fields))
        for name, fields in tables.items()
    ]


def assigned(ctx: WriteContext, column: str, new: str, current: str) -> str:
    """What an update writes into ``column`` (SQL expressions for the ``new`` value and
    the record's ``current`` one): the new value, except where the mapping keeps the
    current one (a null under ``sync_null_values: false``; anything but an empty field
    under ``preserve_values``)."""
    if column in ctx.set_if_empty:
        return f"COALESCE({current}, {new})"
    if column in ctx.keep_on_null:
        return f"COALESCE({new}, {current})"
    return new
