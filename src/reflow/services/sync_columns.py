"""The source columns a sync's mappings read: known from the cached catalogue (a model's
introspected columns, a segment's model or table, a cached table) and, on a miss, from
the source itself, so a mapping from a column that does not exist is refused at save."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.crypto import Vault
from reflow.db.tables import Source, SourceModel, Sync
from reflow.db.tables_sources import FilterSegment, SourceTable
from reflow.errors import BadRequest
from reflow.services import sources


def known(session: Session, sync: Sync) -> set[str]:
    """The source object's column names (lower-cased) when Reflow knows them without
    asking the source; empty when it does not (the run then reports a missing column)."""
    obj = sync.source_object or {}
    model_id, table_id = None, None
    if obj.get("type") == "model":
        model_id = obj.get("id")
    elif obj.get("type") == "segment":
        segment = session.get(FilterSegment, obj.get("id"))
        model_id, table_id = (segment.model_id, segment.table_id) if segment else (None, None)
    elif obj.get("type") == "table":
        table_id = session.scalar(select(SourceTable.id).where(
            SourceTable.source_id == sync.source_id,
            SourceTable.table_schema == obj.get("table_schema"),
            SourceTable.table_name == obj.get("table_name")).limit(1))
    columns: list[dict[str, Any]] | None = None
    if model_id is not None:
        model = session.get(SourceModel, model_id)
        columns = model.columns if model else None
    elif table_id is not None:
        table = session.get(SourceTable, table_id)
        columns = table.columns if table else None
    return {str(c.get("name", "")).lower() for c in columns or []}


def check(session: Session, sync: Sync, *, vault: Vault) -> None:
    """A column mapping must read a column the source object has, when its columns are
    known: saying so at save beats a run that fails on it later. The cached columns may
    be stale (a column added since), so a miss is confirmed with the source itself."""
    names = known(session, sync)
    missing = _missing_columns(sync, names)
    if missing and names:
        live = _live_columns(session, sync, vault)
        missing = _missing_columns(sync, live) if live is not None else []
    if missing:
        index, column = missing[0]
        raise BadRequest(
            f"mappings[{index}].from.data: the source object has no column {column!r}"
        )


def _missing_columns(sync: Sync, names: set[str]) -> list[tuple[int, str]]:
    if not names:
        return []
    out = []
    for index, mapping in enumerate(sync.mappings or []):
        column = mapping["from"]["data"] if mapping["from"]["type"] == "column" else None
        if isinstance(column, str) and column.lower() not in names:
            out.append((index, column))
    return out


def _live_columns(session: Session, sync: Sync, vault: Vault) -> set[str] | None:
    """The source object's columns as the source describes them now; None when it
    cannot say (unreachable): the run then reports a missing column."""
    from reflow.connectors.errors import ConnectorError
    from reflow.services.source_objects import query_for

    source = session.get(Source, sync.source_id)
    if source is None:
        return None
    try:
        connector = sources.connector(source, vault=vault)
    except Exception:
        return None
    try:
        query = query_for(session, sync=sync, connector=connector)
        return {c.name.lower() for c in connector.query_columns(query)}
    except (ConnectorError, LookupError):
        return None
    finally:
        connector.close()
