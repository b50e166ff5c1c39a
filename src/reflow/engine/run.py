"""Executing one sync run.

read (Arrow batches) -> map -> stage next to the snapshot -> diff -> write in batches
-> commit delivered keys to the snapshot after each acknowledged batch.

A crash leaves the snapshot as it was after the last acknowledged batch: the next
run resends what was not acknowledged, and upsert-style writes are idempotent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from reflow.connectors.base import BatchWriter, DestinationConnector, SourceConnector, WriteContext
from reflow.connectors.errors import ConnectorError
from reflow.db.tables import Sync, SyncRun, utcnow
from reflow.engine import progress
from reflow.engine.mapping import map_batch
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.engine.writing import Canceled, DeliveryStats, deliver
from reflow.runtime import Runtime
from reflow.services import destinations, sources
from reflow.services.source_objects import query_for

log = logging.getLogger(__name__)

#: Which writer action each operation sends changed rows with.
CHANGED_ACTION = {
    "upsert": "upsert",
    "mirror": "upsert",
    "update": "update",
    "insert": "insert",
    "append": "append",
    "delete": "delete",
}


@dataclass
class Plan:
    sync: Sync
    run: SyncRun
    source: SourceConnector
    destination: DestinationConnector
    query: str
    key_field: str
    full: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


def execute(runtime: Runtime, run_id: int, stop: threading.Event | None = None) -> None:
    """Run ``run_id`` if it is still queued; never raises."""
    if not progress.claim(runtime, run_id):
        log.info("run %s was not queued any more; nothing to do", run_id)
        return
    stop = stop or threading.Event()
    try:
        _execute(runtime, run_id, stop)
    except Canceled as exc:
        progress.finish(runtime, run_id, status="failed", canceled=exc.by_user,
                        error_message=str(exc), **exc.stats)
    except ConnectorError as exc:
        progress.finish(runtime, run_id, status="failed", error_code=type(exc).__name__,
                        error_message=str(exc))
    except Exception as exc:  # the run must end failed, never stay working
        log.exception("run %s failed", run_id)
        progress.finish(runtime, run_id, status="failed", error_code="INTERNAL_ERROR",
                        error_message=f"{type(exc).__name__}: {exc}")


def _plan(runtime: Runtime, run_id: int) -> Plan:
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
        session.expunge_all()
    key_field = next(m["to"] for m in sync.mappings if m["is_primary_identifier"])
    return Plan(sync, run, source, destination, query, key_field)


def _execute(runtime: Runtime, run_id: int, stop: threading.Event) -> None:
    plan = _plan(runtime, run_id)
    store = SnapshotStore(runtime.settings.resolved_snapshot_dir / f"sync_{plan.sync.id}.duckdb")
    try:
        plan.full = _decide_full(store, plan)
        _stage(runtime, plan, store, stop)
        invalid, changed = store.classify(full=plan.full)
        removed = store.removed_count() if plan.sync.operation == "mirror" else 0
        _log_invalid(runtime, plan, store)
        counts = {
            "source_record_count": store.source_count(),
            "source_record_invalids": invalid,
            "source_record_updates": changed,
            "source_record_deletes": removed,
            "full_sync": plan.full,
        }
        progress.report(runtime, run_id, current_step="Loading data into destination service", **counts)
        stats = _deliver(runtime, plan, store, stop, counts)
        store.set_meta("mappings", _mapping_fingerprint(plan.sync))
        progress.finish(runtime, run_id, status="completed", **counts, **stats.as_counters())
    finally:
        store.close()
        plan.source.close()
        plan.destination.close()


def _decide_full(store: SnapshotStore, plan: Plan) -> bool:
    """A new target resets the snapshot; new mappings or a user request resend all."""
    target = json.dumps([plan.sync.destination_id, plan.sync.destination_object, plan.key_field,
                         plan.sync.operation])
    if store.meta("target") != target:
        store.reset()
        store.set_meta("target", target)
        return True
    changed_mappings = store.meta("mappings") != _mapping_fingerprint(plan.sync)
    return plan.run.force_full_sync or changed_mappings


def _mapping_fingerprint(sync: Sync) -> str:
    return hashlib.sha256(json.dumps(sync.mappings, sort_keys=True).encode()).hexdigest()


def _stage(runtime: Runtime, plan: Plan, store: SnapshotStore, stop: threading.Event) -> None:
    progress.report(runtime, plan.run.id, current_step="Unloading data from warehouse")
    meta = {
        "sync_run_id": plan.run.id,
        "sync_id": plan.sync.id,
        "sync_started_at": utcnow().isoformat(),
        "record_synced_at": utcnow().isoformat(),
    }
    for batch in plan.source.read(plan.query, batch_size=runtime.settings.batch_size):
        if stop.is_set():
            raise Canceled("interrupted by shutdown before any record was sent", by_user=False)
        store.stage(map_batch(batch, plan.sync.mappings, meta), plan.key_field)


def _log_invalid(runtime: Runtime, plan: Plan, store: SnapshotStore) -> None:
    reader = store.batches("invalid", 10_000)
    for batch in reader:
        records = []
        for row in batch.to_pylist():
            key = row.pop(KEY)
            row.pop(HASH)
            if key is None:
                reason = f"Matching ID {plan.key_field} is null"
            else:
                reason = f"Duplicate value {key!r} of {plan.key_field}"
            records.append({"identifier": key, "reason": reason, "payload": row})
        progress.log_records(runtime, plan.run.id, records, status="invalid",
                             operation=plan.sync.operation)


def _deliver(
    runtime: Runtime, plan: Plan, store: SnapshotStore, stop: threading.Event,
    counts: dict[str, Any],
) -> DeliveryStats:
    ctx = WriteContext(
        sync_id=plan.sync.id,
        run_id=plan.run.id,
        object_name=plan.sync.destination_object,
        key_field=plan.key_field,
        fields=tuple(m["to"] for m in plan.sync.mappings),
    )
    writer: BatchWriter = plan.destination.open_writer(ctx)
    stats = DeliveryStats()
    batch_size = min(runtime.settings.batch_size, plan.destination.capabilities.batch_size)
    try:
        action = CHANGED_ACTION[plan.sync.operation]
        for batch in store.batches("changed", batch_size):
            deliver(runtime, plan.run.id, writer, store, batch, action, stats, stop, counts,
                    operation=plan.sync.operation)
        if plan.sync.operation == "mirror":
            _delete_removed(runtime, plan, store, writer, stats, stop, counts, batch_size)
    finally:
        writer.close()
    return stats


def _delete_removed(
    runtime: Runtime, plan: Plan, store: SnapshotStore, writer: BatchWriter,
    stats: DeliveryStats, stop: threading.Event, counts: dict[str, Any], batch_size: int,
) -> None:
    """Mirror: delete what Reflow itself delivered and the model no longer has."""
    for batch in store.batches("removed", batch_size):
        keys = batch.column(0)
        payload = pa.RecordBatch.from_arrays([keys, keys], names=[plan.key_field, KEY])
        deliver(runtime, plan.run.id, writer, store, payload, "delete", stats, stop, counts,
                operation="delete")
