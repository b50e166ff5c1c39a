"""Wire objects of the source catalogue: tables, columns, segments, datasets."""

from __future__ import annotations

import re
from typing import Any

from reflow.api.envelope import iso
from reflow.db.tables import SourceModel
from reflow.db.tables_sources import FilterSegment, SourceTable


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unnamed"


def table_item(row: SourceTable) -> dict[str, Any]:
    return {
        "table_catalog": row.table_catalog,
        "table_schema": row.table_schema,
        "table_name": row.table_name,
    }


def table_object(row: SourceTable, *, with_columns: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "table", "id": row.id, **table_item(row)}
    if with_columns:
        out["columns"] = [{"name": c["name"], "type": c["data_type"]} for c in row.columns or []]
    return out


def column(col: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": col["name"],
        "data_type": col["data_type"],
        "can_be_upsert_key": bool(col.get("can_be_upsert_key")),
    }


def segment(row: FilterSegment) -> dict[str, Any]:
    return {
        "type": "segment",
        "id": row.id,
        "name": row.name,
        "model_id": row.model_id,
        "dataset_id": row.model_id,
        "table_id": row.table_id,
        "query": row.query,
        "record_count": row.record_count,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "resource_identifier": f"segment:{slug(row.name)}",
        "molecules": row.molecules,
        "filter_segment_source_object_id": row.id,
        "cohorts": [],
    }


def dataset(row: SourceModel) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": "sql",
        "name": row.name,
        "source_id": row.source_id,
        "query": row.query,
        "description": row.description,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "resource_identifier": f"dataset:{slug(row.name)}",
        "cached_record_count": None,
        "columns": [{"name": c["name"], "data_type": c["type"]} for c in row.columns or []],
        "model_id": row.id,
    }
