"""Datasets (Census §8). A SQL dataset *is* a model: one ``SourceModel`` row, two
views (``/datasets/{id}`` and ``/sources/{source_id}/models/{id}``, same id).
Entity-resolution datasets are not supported."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables import Source, SourceModel
from reflow.errors import BadRequest, NotFound
from reflow.services import models, segments, sources

TYPES = ("sql",)
UNSUPPORTED = ("entity_resolution",)


def _check_type(value: Any) -> None:
    if value in UNSUPPORTED:
        raise BadRequest(f"type: {value!r} datasets are not supported; use type 'sql'")
    if value not in TYPES:
        raise BadRequest(f"type is required and must be one of: {', '.join(TYPES)}")


def _check_text(body: dict[str, Any], *, required: bool) -> None:
    for field in ("name", "query"):
        if (required or field in body) and (
            not isinstance(body.get(field), str) or not body[field].strip()
        ):
            raise BadRequest(f"{field} is required and must be a non-empty string")
    if body.get("description") is not None and not isinstance(body["description"], str):
        raise BadRequest("description must be a string or null")


def create(
    session: Session, *, workspace_id: int, vault: Vault, body: dict[str, Any]
) -> SourceModel:
    _check_type(body.get("type"))
    source_id = body.get("source_id")
    if not isinstance(source_id, int) or isinstance(source_id, bool):
        raise BadRequest("source_id is required and must be an integer")
    _check_text(body, required=True)
    try:
        source = sources.get(session, workspace_id=workspace_id, source_id=source_id)
    except NotFound:
        raise BadRequest(f"source_id: no source {source_id}") from None
    return models.create(
        session,
        source=source,
        vault=vault,
        name=body["name"],
        query=body["query"],
        description=body.get("description"),
    )


def get(session: Session, *, workspace_id: int, dataset_id: int) -> SourceModel:
    return get_scoped(session, SourceModel, dataset_id, workspace_id, "dataset")


def list_(session: Session, *, workspace_id: int, params: PageParams, type: str | None) -> Page:
    stmt = select(SourceModel).where(SourceModel.workspace_id == workspace_id)
    if type is not None and type not in TYPES:
        stmt = stmt.where(SourceModel.id.is_(None))  # no datasets of other types exist
    return paginate(session, stmt, params, SourceModel.id)


def update(
    session: Session, *, dataset: SourceModel, vault: Vault, body: dict[str, Any]
) -> SourceModel:
    if "type" in body and body["type"] != "sql":
        raise BadRequest("type cannot be changed")
    if "source_id" in body and body["source_id"] != dataset.source_id:
        raise BadRequest("source_id cannot be changed; create a new dataset instead")
    _check_text(body, required=False)
    source = session.get(Source, dataset.source_id)
    assert source is not None  # source_id is a non-null foreign key
    return models.update(session, model=dataset, source=source, vault=vault, changes=body)


def delete(session: Session, *, dataset: SourceModel) -> None:
    segments.ensure_model_unused(session, model=dataset)
    models.delete(session, model=dataset)
