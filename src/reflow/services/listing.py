"""What list endpoints render beside each row, loaded for a whole page at once: a
fixed number of statements per page, whatever its length (no statement per row)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reflow.db.tables import SourceModel, Sync, SyncRun


def last_runs(session: Session, *, sync_ids: Sequence[int]) -> dict[int, SyncRun]:
    """Each sync's latest run (highest id), in one statement."""
    if not sync_ids:
        return {}
    latest = (
        select(func.max(SyncRun.id))
        .where(SyncRun.sync_id.in_(sync_ids))
        .group_by(SyncRun.sync_id)
        .scalar_subquery()
    )
    runs = session.scalars(select(SyncRun).where(SyncRun.id.in_(latest))).all()
    return {run.sync_id: run for run in runs}


def preload_source_objects(session: Session, *, syncs: Sequence[Sync]) -> list[Any]:
    """Load the models, segments and topics the syncs read, one statement per kind, into
    the session's identity map: ``source_objects.describe`` then finds each with
    ``session.get`` without a statement of its own, and renders exactly as before. The
    identity map holds objects weakly: the caller keeps the returned list while it
    renders."""
    ids: dict[str, set[int]] = defaultdict(set)
    for sync in syncs:
        obj = sync.source_object or {}
        if obj.get("type") in ("model", "segment", "topic") and isinstance(obj.get("id"), int):
            ids[obj["type"]].add(obj["id"])
    loaded: list[Any] = []
    for kind, wanted in ids.items():
        table = _table(kind)
        loaded += session.scalars(select(table).where(table.id.in_(wanted))).all()
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
