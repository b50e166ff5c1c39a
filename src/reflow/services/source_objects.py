"""What a sync reads: the source object's wire form and its SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from reflow.api.envelope import iso
from reflow.connectors.base import SourceConnector, TableRef
from reflow.db.tables import SourceModel, Sync


def describe(session: Session, *, sync: Sync) -> dict[str, Any]:
    """The richer object Census echoes in ``source_attributes.object``."""
    obj = sync.source_object
    if obj.get("type") == "model":
        model = session.get(SourceModel, obj["id"])
        if model is None:
            return dict(obj)
        return {
            "type": "model",
            "id": model.id,
            "name": model.name,
            "created_at": iso(model.created_at),
            "updated_at": iso(model.updated_at),
            "query": model.query,
        }
    return dict(obj)


def query_for(session: Session, *, sync: Sync, connector: SourceConnector) -> str:
    """The SQL a run executes in the source."""
    obj = sync.source_object
    if obj["type"] == "model":
        model = session.get(SourceModel, obj["id"])
        if model is None:
            raise LookupError(f"model {obj['id']} of sync {sync.id} no longer exists")
        return model.query
    if obj["type"] == "table":
        table = TableRef(obj.get("table_catalog") or "", obj["table_schema"], obj["table_name"])
        return connector.table_query(table)
    raise LookupError(f"source object type {obj['type']!r} cannot be read yet")
