"""A run of the state database, planned and handed to the engine.

The engine (``reflow.engine``) executes a :class:`~reflow.engine.plan.RunPlan` and
reports through a ``RunReporter``; it never reads the state database. Here the run is
claimed, its sync read, its connectors opened with their credentials, its source query,
mappings and key resolved, its diff strategy and storage chosen, and the engine's
reports go back to the run's row (:class:`~reflow.jobs.progress.StateReporter`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.orm import Session

from reflow.connectors.errors import TerminalError
from reflow.db.tables import Source, Sync, SyncRun
from reflow.db.tables_sources import FilterSegment
from reflow.engine import run as engine
from reflow.engine.plan import DiffStrategy, RunPlan, RunStorage
from reflow.engine.warehouse_diff import snapshot_key, use_in_warehouse
from reflow.jobs import progress
from reflow.runtime import Runtime
from reflow.services import destinations, sources
from reflow.services.source_objects import query_for

log = logging.getLogger(__name__)


def execute(runtime: Runtime, run_id: int, stop: threading.Event | None = None) -> None:
    """Run ``run_id`` if it is still queued; never raises."""
    if not progress.claim(runtime, run_id):
        log.info("run %s was not queued any more; nothing to do", run_id)
        return
    reporter = progress.StateReporter(runtime, run_id)
    try:
        plan = plan_run(runtime, run_id)
    except Exception as exc:  # the run must end failed, never stay working
        reporter.finish(status="failed", **engine.failure(exc, run_id=run_id))
        return
    engine.execute(plan, reporter, stop)


def plan_run(runtime: Runtime, run_id: int) -> RunPlan:
    """Everything the engine needs to execute ``run_id``, read from the state database.
    The connectors in the plan are open; the engine closes them."""
    with runtime.session() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        sync = session.get(Sync, run.sync_id)
        if sync is None:
            raise LookupError(f"sync {run.sync_id} no longer exists")
        source_row = sources.get(session, workspace_id=sync.workspace_id, source_id=sync.source_id)
        dest_row = destinations.get(
            session, workspace_id=sync.workspace_id, destination_id=sync.destination_id
        )
        source = sources.connector(source_row, vault=runtime.vault)
        destination = destinations.connector(dest_row, vault=runtime.vault)
        query = query_for(session, sync=sync, connector=source)
        mappings = _resolve_segment_membership(session, sync)
        diff = _diff_strategy(source, source_row, sync, mappings)
        session.expunge_all()
    return RunPlan(
        run_id=run.id,
        sync_id=sync.id,
        source=source,
        destination=destination,
        query=query,
        operation=sync.operation,
        destination_id=sync.destination_id,
        object_name=sync.destination_object,
        key_field=next(m["to"] for m in sync.mappings if m["is_primary_identifier"]),
        mappings=tuple(mappings),
        settings=sync.settings or {},
        diff=diff,
        storage=RunStorage(
            snapshots=runtime.snapshots,
            snapshot_key=snapshot_key(sync.id),
            records_home=runtime.settings.home,
            on_record_part=runtime.run_files.saved,
        ),
        batch_size=runtime.settings.batch_size,
        force_full=bool(run.force_full_sync),
        bookkeeping_namespace=runtime.installation_id() if diff == "in_warehouse" else None,
    )


def _diff_strategy(
    connector: Any, source: Source, sync: Sync, mappings: list[dict[str, Any]]
) -> DiffStrategy:
    """In the warehouse when the source and the sync allow it (see
    :func:`~reflow.engine.warehouse_diff.use_in_warehouse`), engine-side otherwise."""
    if use_in_warehouse(
        connector, sync_engine=source.sync_engine, read_only=source.read_only_connection,
        mappings=mappings, operation=sync.operation,
    ):
        return "in_warehouse"
    return "engine_side"


def _resolve_segment_membership(session: Session, sync: Sync) -> list[dict[str, Any]]:
    """``segment_membership`` mappings send the segment the sync reads (every record of
    the run is a member of it), by name or id (``identify_by``). They are resolved into
    constants here, so a renamed segment changes the mappings' fingerprint and its
    members are sent again with the new name."""
    if not any(m["from"]["type"] == "segment_membership" for m in sync.mappings):
        return list(sync.mappings)
    source = sync.source_object or {}
    segment = session.get(FilterSegment, source["id"]) if source.get("type") == "segment" else None
    if segment is None:
        raise TerminalError("segment_membership: the sync's source is not a segment")
    mappings = []
    for mapping in sync.mappings:
        if mapping["from"]["type"] == "segment_membership":
            by = (mapping["from"]["data"] or {}).get("identify_by", "name")
            value, basic_type = (segment.name, "text") if by == "name" else (segment.id, "number")
            mapping = {**mapping, "from": {"type": "constant_value",
                                           "data": {"value": value, "basic_type": basic_type}}}
        mappings.append(mapping)
    return mappings
