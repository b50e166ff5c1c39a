"""The statements clients poll, executed by the driver itself on PostgreSQL.

A polled read's statements are Core SELECTs built once at import. SQLAlchemy's
execution of one (the compiled-cache lookup, an execution context, the cursor's
column description rebuilt for the result's metadata, a ``Row`` per row) cost more CPU
than psycopg sending it and reading the answer: ~85 us of ~140 us for a sync run's row.
``HotRead`` compiles its statement once per dialect and, on psycopg, executes the SQL
on the DBAPI connection under the caller's SQLAlchemy connection (same transaction,
same pool), with a named tuple of the statement's column keys per row, so the rows
read as SQLAlchemy's do (``row.id``, ``row.run_status``). It fires the engine's
``before_cursor_execute`` and ``after_cursor_execute`` events as SQLAlchemy does (what
counts statements keeps counting). A statement this cannot run the same way (a result
processor, an expanding or post-compile parameter, another driver) is
executed by SQLAlchemy as before; ``on_psycopg`` gives one the same rows in a form it
can run (an array parameter, ``= ANY(:ids)``, for an expanding ``IN``, which SQLite
has no form of).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Select


@dataclass(frozen=True)
class _Plan:
    sql: str
    defaults: dict[str, Any]  # the statement's own literal values (``kind = 'sync'``)
    row: Callable[[Sequence[Any]], Any]
    binds: dict[str, Callable[[Any], Any]]  # the types' bind processors, by parameter


class HotRead:
    def __init__(self, statement: Select[Any], *, on_psycopg: Select[Any] | None = None) -> None:
        self.statement, self.on_psycopg = statement, on_psycopg
        self._plans: dict[Dialect, _Plan | None] = {}

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> Sequence[Any]:
        dialect = connection.dialect
        plan = self._plans[dialect] if dialect in self._plans else self._plan(dialect)
        if plan is None:
            return connection.execute(self.statement, params).all()
        values = {**plan.defaults, **params}
        for name, process in plan.binds.items():
            values[name] = process(values[name])
        driver: Any = connection.connection.driver_connection
        dispatch = connection.dispatch
        with driver.cursor(row_factory=lambda _cursor: plan.row) as cursor:
            if dispatch.before_cursor_execute:
                dispatch.before_cursor_execute(connection, cursor, plan.sql, values, None, False)
            try:
                cursor.execute(plan.sql, values)
                rows = cursor.fetchall()
            except Exception as exc:
                # As SQLAlchemy would: its exception classes (the app's handlers know
                # DataError), a dead connection invalidated so the pool replaces it.
                connection._handle_dbapi_exception(exc, plan.sql, values, cursor, None)
            if dispatch.after_cursor_execute:
                dispatch.after_cursor_execute(connection, cursor, plan.sql, values, None, False)
        return rows  # type: ignore[no-any-return]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any | None:
        rows = self.rows(connection, params)
        return rows[0] if rows else None

    def _plan(self, dialect: Dialect) -> _Plan | None:
        statement = self.statement if self.on_psycopg is None else self.on_psycopg
        plan = self._plans[dialect] = _compile(statement, dialect)
        return plan


def _compile(statement: Select[Any], dialect: Dialect) -> _Plan | None:
    if dialect.driver != "psycopg":
        return None
    compiled: Any = statement.compile(dialect=dialect)
    if compiled.positional or compiled.post_compile_params or compiled.literal_execute_params:
        return None
    columns = compiled._result_columns
    if any(c[3]._cached_result_processor(dialect, None) for c in columns):
        return None
    try:
        row = namedtuple("HotRow", [c[0] for c in columns])._make  # type: ignore[misc, attr-defined]
    except ValueError:  # a key a named tuple cannot have
        return None
    defaults = {name: value for name, value in compiled.params.items() if value is not None}
    return _Plan(compiled.string, defaults, row, dict(compiled._bind_processors))
