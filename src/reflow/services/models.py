"""Models: named SQL queries over a source, with columns introspected from the query."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.connectors.errors import ConnectorError
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables import Source, SourceModel, Sync
from reflow.errors import BadRequest, Conflict, NotFound
from reflow.services import sources


def _introspect(source: Source, query: str, vault: Vault) -> list[dict[str, Any]]:
    """Columns of the query, or a 400 carrying the database's own message."""
    try:
        connector = sources.connector(source, vault=vault)
    except Exception as exc:
        raise BadRequest(f"source {source.id} cannot be used: {exc}") from exc
    try:
        return [{"name": c.name, "type": c.type} for c in connector.query_columns(query)]
    except ConnectorError as exc:
        raise BadRequest(f"query: {exc}") from exc
    finally:
        connector.close()


def check_query(*, source: Source, vault: Vault, query: str) -> None:
    """What create checks, without storing anything (``validate_only``)."""
    if not query.strip():
        raise BadRequest("query must not be empty")
    _introspect(source, query, vault)


def create(
    session: Session,
    *,
    source: Source,
    vault: Vault,
    name: str,
    query: str,
    description: str | None = None,
) -> SourceModel:
    if not query.strip():
        raise BadRequest("query must not be empty")
    columns = _introspect(source, query, vault)
    model = SourceModel(
        workspace_id=source.workspace_id,
        source_id=source.id,
        name=name,
        query=query,
        description=description,
        columns=columns,
    )
    session.add(model)
    session.flush()
    return model


def update(
    session: Session, *, model: SourceModel, source: Source, vault: Vault, changes: dict[str, Any]
) -> SourceModel:
    """A changed query is introspected first; if it fails, nothing changes and the
    model keeps its previous columns."""
    if changes.get("query") is not None and changes["query"] != model.query:
        model.columns = _introspect(source, changes["query"], vault)
        model.query = changes["query"]
    if changes.get("name") is not None:
        model.name = changes["name"]
    if "description" in changes:
        model.description = changes["description"]
    session.flush()
    return model


def get(session: Session, *, source: Source, model_id: int) -> SourceModel:
    model = get_scoped(session, SourceModel, model_id, source.workspace_id, "model")
    if model.source_id != source.id:
        raise NotFound(f"model {model_id} not found")
    return model


def find_by_name(session: Session, *, source: Source, name: str) -> SourceModel | None:
    return session.scalar(
        select(SourceModel).where(SourceModel.source_id == source.id, SourceModel.name == name)
    )


def list_(session: Session, *, source: Source, params: PageParams) -> Page:
    stmt = select(SourceModel).where(SourceModel.source_id == source.id)
    return paginate(session, stmt, params, SourceModel.id)


def delete(session: Session, *, model: SourceModel) -> None:
    users = [
        s.id
        for s in session.scalars(select(Sync).where(Sync.source_id == model.source_id))
        if s.source_object.get("type") == "model" and s.source_object.get("id") == model.id
    ]
    if users:
        ids = ", ".join(str(i) for i in users)
        raise Conflict(f"model {model.id} is used by syncs {ids}; delete those syncs first")
    session.delete(model)
    session.flush()
