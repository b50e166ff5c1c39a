"""Slugs and the "managed" mark of objects a config-as-code project applied.

``reflow apply`` registers each object it creates or adopts here; ``reflow export``
and ``plan`` read the register to name server objects by slug. A row whose object
was deleted through the API is ignored when read and replaced when its id is
registered again, so a stale row never marks an unrelated object.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.db.tables import Destination, Source, SourceModel, Sync
from reflow.db.tables_managed import ManagedObject
from reflow.db.tables_sources import FilterSegment
from reflow.errors import BadRequest, Conflict, NotFound

KINDS: dict[str, Any] = {
    "source": Source,
    "destination": Destination,
    "model": SourceModel,
    "segment": FilterSegment,
    "sync": Sync,
}
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,199}$")
DEFAULT_MANAGER = "reflow-project"


def _table(kind: str) -> Any:
    table = KINDS.get(kind)
    if table is None:
        raise BadRequest(f"kind {kind!r} is not one of: {', '.join(KINDS)}")
    return table


def _existing_ids(session: Session, workspace_id: int, kind: str) -> set[int]:
    table = _table(kind)
    return set(session.scalars(select(table.id).where(table.workspace_id == workspace_id)))


def list_(session: Session, *, workspace_id: int) -> list[ManagedObject]:
    rows = session.scalars(
        select(ManagedObject)
        .where(ManagedObject.workspace_id == workspace_id)
        .order_by(ManagedObject.kind, ManagedObject.object_id)
    ).all()
    alive = {kind: _existing_ids(session, workspace_id, kind) for kind in KINDS}
    return [r for r in rows if r.object_id in alive.get(r.kind, set())]


def marks(session: Session, *, workspace_id: int, kind: str) -> dict[int, ManagedObject]:
    """Object id -> its row, for annotating a rendered listing."""
    rows = session.scalars(
        select(ManagedObject).where(
            ManagedObject.workspace_id == workspace_id, ManagedObject.kind == kind
        )
    )
    return {r.object_id: r for r in rows}


def annotate(item: dict[str, Any], row: ManagedObject | None) -> dict[str, Any]:
    """Extra keys on a resource's wire object; Census keys are left as they are."""
    item["slug"] = row.slug if row else None
    item["managed_by"] = row.managed_by if row else None
    return item


def register(
    session: Session, *, workspace_id: int, kind: str, object_id: int, body: dict[str, Any]
) -> ManagedObject:
    slug, manager = body.get("slug"), body.get("managed_by", DEFAULT_MANAGER)
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise BadRequest("slug must be lowercase letters, digits, '-' or '_' (at most 200)")
    if not isinstance(manager, str) or not manager.strip() or len(manager) > 100:
        raise BadRequest("managed_by must be a non-empty string of at most 100 characters")
    if object_id not in _existing_ids(session, workspace_id, kind):
        raise NotFound(f"{kind} {object_id} not found")
    rows = marks(session, workspace_id=workspace_id, kind=kind)
    alive = _existing_ids(session, workspace_id, kind)
    for other in rows.values():
        if other.slug == slug and other.object_id != object_id:
            if other.object_id in alive:
                raise Conflict(f"slug: {kind} {other.object_id} already has slug {slug!r}")
            session.delete(other)  # its object was deleted: the slug is free again
            session.flush()
    row = rows.get(object_id)
    if row is None:
        row = ManagedObject(workspace_id=workspace_id, kind=kind, object_id=object_id)
        session.add(row)
    row.slug, row.managed_by = slug, manager
    session.flush()
    return row


def unregister(session: Session, *, workspace_id: int, kind: str, object_id: int) -> None:
    _table(kind)
    row = marks(session, workspace_id=workspace_id, kind=kind).get(object_id)
    if row is not None:
        session.delete(row)
        session.flush()


def render(row: ManagedObject) -> dict[str, Any]:
    return {"kind": row.kind, "id": row.object_id, "slug": row.slug, "managed_by": row.managed_by}
