"""The first rows of a SQL query with their column types: the console's model editor
shows them before a model is saved. Reads through the source's connector like a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reflow.connectors.errors import ConnectorError
from reflow.crypto import Vault
from reflow.db.tables import Source
from reflow.errors import BadRequest
from reflow.services import sources

PREVIEW_ROWS = 50


@dataclass(frozen=True)
class Preview:
    columns: list[tuple[str, str]]  # (name, Arrow type)
    rows: list[list[Any]]
    truncated: bool  # more rows exist than shown


def preview(source: Source, *, vault: Vault, query: str, limit: int = PREVIEW_ROWS) -> Preview:
    """At most ``limit`` rows. The query is wrapped in ``SELECT * FROM (...) LIMIT n`` so
    the warehouse stops early (every SQL source here accepts a derived table)."""
    body = query.strip().rstrip(";").strip()
    if not body:
        raise BadRequest("query must not be empty")
    sql = f"SELECT * FROM ({body}) AS reflow_preview LIMIT {limit + 1}"
    try:
        connector = sources.connector(source, vault=vault)
    except Exception as exc:
        raise BadRequest(f"source {source.id} cannot be used: {exc}") from exc
    try:
        result = _collect(connector.read(sql, batch_size=limit + 1), limit)
        if not result.columns:  # no rows: the types still come from the query
            cols = [(c.name, c.type) for c in connector.query_columns(body)]
            result = Preview(cols, [], False)
        return result
    except ConnectorError as exc:
        raise BadRequest(f"query: {exc}") from exc
    finally:
        connector.close()


def _collect(batches: Any, limit: int) -> Preview:
    columns: list[tuple[str, str]] = []
    rows: list[list[Any]] = []
    for batch in batches:
        columns = [(f.name, str(f.type)) for f in batch.schema]
        names = batch.schema.names
        for record in batch.to_pylist():
            rows.append([record[n] for n in names])
        if len(rows) > limit:
            break
    return Preview(columns, rows[:limit], len(rows) > limit)
