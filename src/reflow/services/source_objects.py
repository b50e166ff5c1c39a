"""What a sync reads: the source object's wire form and its SQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from reflow.connectors.base import SourceConnector, TableRef
from reflow.db.tables import SourceModel, Sync
from reflow.timestamps import iso


def describe(session: Session, *, sync: Sync | Row[Any],
             models: Mapping[int, Any] | None = None) -> dict[str, Any]:
    """The richer object Census echoes in ``source_attributes.object``. ``models``: the
    models the caller already read (``MODEL_FIELDS``, by id, as ``listing`` does for a
    page); any other is read here."""
    obj = sync.source_object
    if obj.get("type") == "model":
        model = (models.get(obj["id"]) if models is not None and isinstance(obj["id"], int)
                 else session.get(SourceModel, obj["id"]))
        return _describe_model(obj, model)
    if obj.get("type") == "segment":
        return _describe_segment(session, obj)
    if obj.get("type") == "topic":
        from reflow.services import topics

        return topics.describe(session, obj=obj)
    return dict(obj)


#: What ``describe`` shows of a model (a model's ``columns`` can be large: not read).
MODEL_FIELDS = ("id", "name", "created_at", "updated_at", "query")


def _describe_model(obj: dict[str, Any], model: Any) -> dict[str, Any]:
    """``model``: a ``SourceModel`` or a row of its ``MODEL_FIELDS``, or None."""
    if model is None:
        return {"type": "model", "id": obj["id"]}
    # A dataset is stored as the model it is, and echoed as it was given.
    dataset = {"dataset_id": model.id} if obj.get("as") == "dataset" else {}
    return {
        "type": "dataset" if dataset else "model",
        "id": model.id,
        **dataset,
        "name": model.name,
        "created_at": iso(model.created_at),
        "updated_at": iso(model.updated_at),
        "query": model.query,
    }


def _describe_segment(session: Session, obj: dict[str, Any]) -> dict[str, Any]:
    """Census echoes a segment as ``filter_segment_source`` with its dataset."""
    from reflow.db.tables_sources import FilterSegment

    segment = session.get(FilterSegment, obj["id"])
    if segment is None:
        return dict(obj)
    return {
        "type": "filter_segment_source",
        "id": segment.id,
        "filter_segment_id": segment.id,
        "name": segment.name,
        "dataset_id": segment.model_id,
        "table_id": segment.table_id,
        "created_at": iso(segment.created_at),
        "updated_at": iso(segment.updated_at),
        "query": segment.query,
    }


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
    if obj["type"] == "segment":
        from reflow.services import segments

        return segments.query_for(session, segment_id=obj["id"], connector=connector)
    if obj["type"] == "topic":
        from reflow.services import topics

        return topics.query_for(session, sync=sync, connector=connector)
    raise LookupError(f"source object type {obj['type']!r} cannot be read yet")
