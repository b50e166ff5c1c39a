"""Slugs and the "managed" mark of objects a config-as-code project applied.

``reflow apply`` registers each object it creates or adopts here; ``reflow export``
and ``plan`` read the register to name server objects by slug. A row whose object
was deleted through the API is ignored when read and replaced when its id is
registered again, so a stale row never marks an unrelated object.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select
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


def _born(session: Session, workspace_id: int, kind: str) -> dict[int, dt.datetime]:
    """Object id -> created_at of the kind's objects that exist in the workspace."""
    table = _table(kind)
    rows = session.execute(
        select(table.id, table.created_at).where(table.workspace_id == workspace_id)
    ).all()
    return {object_id: created for object_id, created in rows}


def _naive(value: dt.datetime) -> dt.datetime:
    """UTC without tzinfo: SQLite gives naive values back, PostgreSQL aware ones."""
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _live(rows: list[ManagedObject], born: dict[int, dt.datetime]) -> dict[int, ManagedObject]:
    """Rows whose object still exists: same id and same creation time."""
    return {r.object_id: r for r in rows if r.object_id in born
            and marks_object(r.object_created_at, born[r.object_id])}


def marks_object(marked_born: dt.datetime, born: dt.datetime) -> bool:
    """Whether a row that recorded ``marked_born`` marks the object of that id created
    at ``born`` (not an earlier object that had its id)."""
    return _naive(born) == _naive(marked_born)


class Mark(NamedTuple):
    """What ``annotate`` shows of a row, read beside its object (``listing``)."""

    slug: str
    managed_by: str


def _rows(session: Session, workspace_id: int, kind: str) -> list[ManagedObject]:
    return list(session.scalars(
        select(ManagedObject).where(
            ManagedObject.workspace_id == workspace_id, ManagedObject.kind == kind
        ).order_by(ManagedObject.object_id)
    ))


@cache
def _marks_of(kind: str) -> Select[Any]:
    """Rows and their objects' creation times for given ids: built once per kind (every
    list and fetch of a kind runs it; building a statement costs more than running it)."""
    table = _table(kind)
    return (
        select(ManagedObject, table.created_at)
        .join(table, table.id == ManagedObject.object_id)
        .where(ManagedObject.workspace_id == bindparam("workspace_id"),
               ManagedObject.kind == kind,
               ManagedObject.object_id.in_(bindparam("ids", expanding=True)),
               table.workspace_id == bindparam("workspace_id"))
        .order_by(ManagedObject.object_id)
    )


def list_(session: Session, *, workspace_id: int) -> list[ManagedObject]:
    out: list[ManagedObject] = []
    for kind in KINDS:
        out += marks(session, workspace_id=workspace_id, kind=kind).values()
    return out


def marks(session: Session, *, workspace_id: int, kind: str) -> dict[int, ManagedObject]:
    """Object id -> its row, for the objects of ``kind`` that exist."""
    return _live(_rows(session, workspace_id, kind), _born(session, workspace_id, kind))


def annotate(item: dict[str, Any], row: ManagedObject | Mark | None) -> dict[str, Any]:
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
    born = _born(session, workspace_id, kind)
    if object_id not in born:
        raise NotFound(f"{kind} {object_id} not found")
    rows = _rows(session, workspace_id, kind)
    live = _live(rows, born)
    for other in rows:
        if other.object_id != object_id and other.slug != slug:
            continue
        if other.slug == slug and other.object_id != object_id and other.object_id in live:
            raise Conflict(f"slug: {kind} {other.object_id} already has slug {slug!r}")
        if live.get(object_id) is not other:
            session.delete(other)  # a stale row: its object was deleted
    session.flush()
    row = live.get(object_id)
    if row is None:
        row = ManagedObject(workspace_id=workspace_id, kind=kind, object_id=object_id,
                            object_created_at=born[object_id])
        session.add(row)
    row.slug, row.managed_by = slug, manager
    session.flush()
    return row


def unregister(session: Session, *, workspace_id: int, kind: str, object_id: int) -> None:
    for row in _rows(session, workspace_id, kind):
        if row.object_id == object_id:
            session.delete(row)
    session.flush()


def render(row: ManagedObject) -> dict[str, Any]:
    return {"kind": row.kind, "id": row.object_id, "slug": row.slug, "managed_by": row.managed_by}


def annotated(
    session: Session, *, workspace_id: int, kind: str, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rendered resources with ``slug`` and ``managed_by`` (null when no project
    manages them): how the API shows what ``reflow apply`` manages. One statement for
    the page's objects only, however many the workspace holds."""
    if not items:
        return items
    found = session.execute(_marks_of(kind), {
        "workspace_id": workspace_id, "ids": [item["id"] for item in items]}).all()
    rows = _live([row for row, _ in found], {row.object_id: born for row, born in found})
    return [annotate(item, rows.get(item["id"])) for item in items]
