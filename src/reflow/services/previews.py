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


@dataclass(frozen=True)
class KeyProfile:
    """What a first run of a new sync would meet: rows, and rows whose sync key is
    null or repeated (those become invalid records and are not sent)."""

    rows: int
    null_keys: int
    duplicate_keys: int  # rows beyond the first of each repeated key

    @property
    def sendable(self) -> int:
        return self.rows - self.null_keys - self.duplicate_keys


def key_profile(source: Source, *, vault: Vault, query: str, key: str) -> KeyProfile:
    """Counts computed in the source (one aggregate query), nothing read row by row."""
    try:
        connector = sources.connector(source, vault=vault)
    except Exception as exc:
        raise BadRequest(f"source {source.id} cannot be used: {exc}") from exc
    body = query.strip().rstrip(";").strip()
    column = connector.quote_identifier(key)
    sql = (f"SELECT COUNT(*) AS n, COUNT({column}) AS k, COUNT(DISTINCT {column}) AS d "
           f"FROM ({body}) AS reflow_preview")
    try:
        rows = [r for b in connector.read(sql) for r in b.to_pylist()]
    except ConnectorError as exc:
        raise BadRequest(f"query: {exc}") from exc
    finally:
        connector.close()
    n, k, d = (int(rows[0][c] or 0) for c in ("n", "k", "d")) if rows else (0, 0, 0)
    return KeyProfile(n, n - k, k - d)


def source_query(source: Source, *, vault: Vault, obj: dict[str, Any], model_query: str | None,
                 ) -> str:
    """The SQL a sync of this source object would read (a model's query, or the
    connector's query of a table)."""
    if obj.get("type") == "model" and model_query is not None:
        return model_query
    from reflow.connectors.base import TableRef

    connector = sources.connector(source, vault=vault)
    try:
        ref = TableRef(obj.get("table_catalog") or "", obj["table_schema"], obj["table_name"])
        return connector.table_query(ref)
    finally:
        connector.close()
