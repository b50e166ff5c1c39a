"""What list endpoints render beside each row, loaded for a whole page at once: a
fixed number of statements per page, whatever its length (no statement per row)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, BigInteger, Row, Select, and_, any_, bindparam, func, select
from sqlalchemy.orm import Session

from reflow.db.hot import HotRead
from reflow.db.repo import Page, PageParams
from reflow.db.tables import SourceModel, Sync, SyncRun
from reflow.db.tables_links import ProjectModel
from reflow.db.tables_managed import ManagedObject
from reflow.errors import NotFound
from reflow.services.managed import Mark, marks_object
from reflow.services.source_objects import MODEL_FIELDS, describe

#: A skipped run did nothing, so it says nothing about the sync's health (its
#: ``status`` would turn back to Ready): a sync's last run is its last run that ran.
_RAN = SyncRun.status != "skipped"

# The hot statements of lists and fetches are built once, with their values as bound
# parameters: building one (and its cache key) cost more than SQLite running it.
_LAST_RUNS = select(SyncRun).where(SyncRun.id.in_(
    select(func.max(SyncRun.id))
    .where(SyncRun.sync_id.in_(bindparam("ids", expanding=True)), _RAN)
    .group_by(SyncRun.sync_id)
    .scalar_subquery()
))


def last_runs(session: Session, *, sync_ids: Sequence[int]) -> dict[int, SyncRun]:
    """Each sync's last run that ran (``_RAN``), in one statement."""
    if not sync_ids:
        return {}
    runs = session.scalars(_LAST_RUNS, {"ids": list(sync_ids)})
    return {run.sync_id: run for run in runs}


def preload(session: Session, table: Any, ids: Iterable[int | None]) -> list[Any]:
    """The rows of ``table`` with these ids, in one statement, loaded into the session's
    identity map: ``session.get`` then finds each without a statement of its own, so a
    renderer that looks one up per item renders exactly as before. The identity map
    holds objects weakly: the caller keeps the returned list while it renders."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return []
    return list(session.scalars(_by_ids(table), {"ids": sorted(wanted)}))


@cache
def _by_ids(table: Any) -> Select[Any]:
    return select(table).where(table.id.in_(bindparam("ids", expanding=True)))


def preload_source_objects(session: Session, *, syncs: Sequence[Any]) -> list[Any]:
    """The segments and topics the syncs read, one statement per kind (see
    ``preload``), for ``source_objects.describe``; models are ``models_of``'s."""
    ids: dict[str, set[int]] = defaultdict(set)
    for sync in syncs:
        obj = sync.source_object or {}
        if obj.get("type") in ("segment", "topic") and isinstance(obj.get("id"), int):
            ids[obj["type"]].add(obj["id"])
    loaded: list[Any] = []
    for kind, wanted in ids.items():
        loaded += preload(session, _table(kind), wanted)
    return loaded


def _table(kind: str) -> Any:
    if kind == "segment":
        from reflow.db.tables_sources import FilterSegment

        return FilterSegment
    from reflow.db.tables_links import Topic

    return Topic


def models_of(session: Session, *, syncs: Sequence[Any]) -> dict[int, Row[Any]]:
    """The models the syncs read, by id, in one statement: the columns
    ``source_objects.describe`` shows (not a model's ``columns``, which can be large)."""
    ids = {obj["id"] for obj in (s.source_object or {} for s in syncs)
           if obj.get("type") == "model" and isinstance(obj.get("id"), int)}
    if not ids:
        return {}
    rows = _MODELS.rows(session.connection(), {"ids": sorted(ids)})
    return {row.id: row for row in rows}


# -- a sync as the API shows it ------------------------------------------------------
#
# GET /syncs and GET /syncs/{id} are polled: each reads its syncs as plain rows (no ORM
# object to build, no identity map) with, joined in the same statement, each sync's
# last run that ran and its managed mark; then the models they read in one more.

_syncs, _models = Sync.__table__, SourceModel.__table__
_last = SyncRun.__table__.alias("last_run")
_marks = ManagedObject.__table__.alias("mark")
_MODEL_FIELDS = select(*(_models.c[name] for name in MODEL_FIELDS))
_MODELS = HotRead(_MODEL_FIELDS.where(_models.c.id.in_(bindparam("ids", expanding=True))),
                  on_psycopg=_MODEL_FIELDS.where(_models.c.id == any_(
                      bindparam("ids", type_=ARRAY(BigInteger)))))
# A backward scan of the (sync_id, id) index (migration 0940) from the sync's newest
# run to its first that ran: without it PostgreSQL scanned the primary key backwards
# through every later run of every sync.
_LAST_RUN_ID = (select(func.max(SyncRun.id)).where(SyncRun.sync_id == _syncs.c.id, _RAN)
                .correlate(_syncs).scalar_subquery())
_OF_WORKSPACE = _syncs.c.workspace_id == bindparam("workspace_id")
_COLUMNS = (_syncs, _last.c.id.label("run_id"), _last.c.status.label("run_status"),
            _last.c.created_at.label("run_created_at"), _marks.c.slug.label("mark_slug"),
            _marks.c.managed_by.label("mark_managed_by"),
            _marks.c.object_created_at.label("mark_born"))


def _joined(base: Any) -> Any:
    """``base`` (joined to the syncs) with each sync's last run and managed mark."""
    return base.outerjoin(_last, _last.c.id == _LAST_RUN_ID).outerjoin(_marks, and_(
        _marks.c.workspace_id == _syncs.c.workspace_id, _marks.c.kind == "sync",
        _marks.c.object_id == _syncs.c.id))


_SYNC_ROW = HotRead(select(*_COLUMNS).select_from(_joined(_syncs)).where(
    _OF_WORKSPACE, _syncs.c.id == bindparam("sync_id")))


def _sync_page(order: str) -> Select[Any]:
    """A page of the workspace's syncs and, on each row, how many it has in all (the
    window runs over the ids alone, before the joins: a page costs no count statement)."""
    by_id = _syncs.c.id.asc() if order == "asc" else _syncs.c.id.desc()
    page = (select(_syncs.c.id.label("page_id"), func.count().over().label("page_total"))
            .where(_OF_WORKSPACE).order_by(by_id)
            .offset(bindparam("page_offset")).limit(bindparam("page_limit")).subquery("page"))
    return (select(*_COLUMNS, page.c.page_total)
            .select_from(_joined(page.join(_syncs, _syncs.c.id == page.c.page_id)))
            .order_by(by_id))


_SYNC_PAGES = {order: HotRead(_sync_page(order)) for order in ("asc", "desc")}
_SYNC_COUNT = select(func.count()).select_from(_syncs).where(_OF_WORKSPACE)


class LastRun(NamedTuple):
    """What a sync's wire form shows of its last run."""

    id: int
    status: str
    created_at: dt.datetime


class SyncItem(NamedTuple):
    """A sync (a row of its table's columns), what it reads, its last run that ran and
    its managed mark: all its wire form needs."""

    sync: Row[Any]
    source_object: dict[str, Any]
    last_run: LastRun | None
    mark: Mark | None


def sync_items(session: Session, *, workspace_id: int, params: PageParams) -> Page:
    """A page of the workspace's syncs as ``SyncItem``s: two statements (the page with
    its total, the models), whatever its length; a count only for a page past the end."""
    offset = (params.page - 1) * params.per_page
    # Core on the session's connection: the ORM's execution layer has nothing to do.
    connection = session.connection()
    rows = _SYNC_PAGES[params.order].rows(connection, {
        "workspace_id": workspace_id, "page_offset": offset, "page_limit": params.per_page})
    if rows:
        total = rows[0].page_total
    else:
        total = connection.scalar(_SYNC_COUNT, {"workspace_id": workspace_id}) if offset else 0
    return Page(_items(session, rows), total or 0, params)


def sync_item(session: Session, *, workspace_id: int, sync_id: int) -> SyncItem:
    row = _SYNC_ROW.first(session.connection(), {"workspace_id": workspace_id,
                                                 "sync_id": sync_id})
    if row is None:
        raise NotFound(f"sync {sync_id} not found")
    return _items(session, [row])[0]


def _items(session: Session, rows: Sequence[Row[Any]]) -> list[SyncItem]:
    models = models_of(session, syncs=rows)
    loaded = preload_source_objects(session, syncs=rows)
    # The syncs of a page often read one model: it is described once (read-only: the
    # items share the dict).
    described: dict[tuple[Any, ...], dict[str, Any]] = {}
    items = []
    for row in rows:
        obj = row.source_object or {}
        if obj.get("type") != "model" or not isinstance(obj.get("id"), int):
            source_object = describe(session, sync=row, models=models)
        else:
            key = (obj["id"], obj.get("as") == "dataset")  # all describe() looks at
            if key not in described:
                described[key] = describe(session, sync=row, models=models)
            source_object = described[key]
        items.append(SyncItem(row, source_object, _last_run(row), _mark(row)))
    del loaded  # held until every sync was described
    return items


def _last_run(row: Row[Any]) -> LastRun | None:
    return None if row.run_id is None else LastRun(row.run_id, row.run_status,
                                                   row.run_created_at)


def _mark(row: Row[Any]) -> Mark | None:
    if row.mark_slug is None or not marks_object(row.mark_born, row.created_at):
        return None  # unmanaged, or a stale row: see services/managed.py
    return Mark(row.mark_slug, row.mark_managed_by)


def grouped(session: Session, column: Any, ids: Sequence[int], *order: Any) -> dict[int, list[Any]]:
    """The rows whose ``column`` (a foreign key) is one of ``ids``, grouped by it, in one
    statement: what each item of a page owns (an invitation's workspace grants...)."""
    out: dict[int, list[Any]] = defaultdict(list)
    if ids:
        table = column.class_
        for row in session.scalars(select(table).where(column.in_(ids)).order_by(*order)):
            out[getattr(row, column.key)].append(row)
    return out


def project_models(
    session: Session, *, project_ids: Sequence[int]
) -> dict[int, list[tuple[ProjectModel, SourceModel]]]:
    """Each project's (project model, model) pairs, in one statement."""
    out: dict[int, list[tuple[ProjectModel, SourceModel]]] = defaultdict(list)
    if project_ids:
        rows = session.execute(
            select(ProjectModel, SourceModel)
            .join(SourceModel, SourceModel.id == ProjectModel.model_id)
            .where(ProjectModel.project_id.in_(project_ids))
            .order_by(ProjectModel.id)
        )
        for pm, model in rows:
            out[pm.project_id].append((pm, model))
    return out
