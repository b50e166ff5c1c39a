"""What list endpoints render beside each row, loaded for a whole page at once: a
fixed number of statements per page, whatever its length (no statement per row)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from reflow.db.tables import SourceModel, Sync, SyncRun
from reflow.db.tables_links import ProjectModel

# The hot statements of lists and fetches are built once, with their values as bound
# parameters: building one (and its cache key) cost more than SQLite running it.
_LAST_RUNS = select(SyncRun).where(SyncRun.id.in_(
    select(func.max(SyncRun.id))
    .where(SyncRun.sync_id.in_(bindparam("ids", expanding=True)), SyncRun.status != "skipped")
    .group_by(SyncRun.sync_id)
    .scalar_subquery()
))


def last_runs(session: Session, *, sync_ids: Sequence[int]) -> dict[int, SyncRun]:
    """Each sync's last run that ran, in one statement: a skipped run did nothing, so it
    says nothing about the sync's health (its ``status`` would turn back to Ready)."""
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


def preload_source_objects(session: Session, *, syncs: Sequence[Sync]) -> list[Any]:
    """The models, segments and topics the syncs read, one statement per kind (see
    ``preload``), for ``source_objects.describe``."""
    ids: dict[str, set[int]] = defaultdict(set)
    for sync in syncs:
        obj = sync.source_object or {}
        if obj.get("type") in ("model", "segment", "topic") and isinstance(obj.get("id"), int):
            ids[obj["type"]].add(obj["id"])
    loaded: list[Any] = []
    for kind, wanted in ids.items():
        loaded += preload(session, _table(kind), wanted)
    return loaded


def _table(kind: str) -> Any:
    if kind == "model":
        return SourceModel
    if kind == "segment":
        from reflow.db.tables_sources import FilterSegment

        return FilterSegment
    from reflow.db.tables_links import Topic

    return Topic


def sync_page(
    session: Session, *, syncs: Sequence[Sync]
) -> list[tuple[Sync, dict[str, Any], SyncRun | None]]:
    """Each sync with its described source object and its last run, for rendering."""
    from reflow.services.source_objects import describe

    loaded = preload_source_objects(session, syncs=syncs)
    runs = last_runs(session, sync_ids=[s.id for s in syncs])
    rows = [(sync, describe(session, sync=sync), runs.get(sync.id)) for sync in syncs]
    del loaded  # held until every sync was described
    return rows


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
