"""Executing one sync run.

read (Arrow batches) -> map -> coerce to the destination's types -> stage next to the
snapshot -> diff -> write in batches -> commit delivered keys to the snapshot after
each acknowledged batch.

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
from reflow.connectors.errors import ConnectorError, TerminalError
from reflow.connectors.saas.metadata import FieldCreator, sql_field_type
from reflow.db.tables import Sync, SyncRun, utcnow
from reflow.db.tables_sources import FilterSegment
from reflow.engine import appending, memory, progress
from reflow.engine.mapping import (
    auto_mappings,
    coerce,
    field_types,
    map_batch,
    normalize_name,
    source_column,
)
from reflow.engine.records import SucceededLog
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.engine.warehouse_diff import WarehouseDiff, open_store
from reflow.engine.writing import (
    HIDDEN_PREFIX,
    Canceled,
    Delivery,
    DeliveryStats,
    check,
    deliver,
    finish_writer,
)
from reflow.errors import run_error_code
from reflow.runtime import Runtime
from reflow.services import destinations, sources
from reflow.services.source_objects import query_for

log = logging.getLogger(__name__)
# Engine-side snapshot or in-warehouse diff: the run drives either through the same calls.
Store = SnapshotStore | WarehouseDiff

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
    #: The sync's mappings plus those ``sync_all_properties`` adds for this run.
    mappings: list[dict[str, Any]] = field(default_factory=list)
    #: Destination field -> (its type, the Arrow type values are cast to).
    types: dict[str, tuple[str, pa.DataType]] = field(default_factory=dict)
    full: bool = False
    uncastable: int = 0
    #: This run's keys of rows with a value their field's type cannot hold (see ``_stage``).
    uncastable_keys: list[pa.Array] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    #: The run's counters once the diff has set them; rows found uncastable after that
    #: (the in-warehouse diff coerces while delivering) are moved into ``invalid`` here.
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        return self.sync.settings or {}

    @property
    def label(self) -> str:
        """The operation records of changed rows are reported under."""
        return "upsert" if self.sync.operation == "mirror" else self.sync.operation


def execute(runtime: Runtime, run_id: int, stop: threading.Event | None = None) -> None:
    """Run ``run_id`` if it is still queued; never raises."""
    if not progress.claim(runtime, run_id):
        log.info("run %s was not queued any more; nothing to do", run_id)
        return
    memory.return_freed_memory()
    stop = stop or threading.Event()
    try:
        _execute(runtime, run_id, stop)
    except Canceled as exc:
        progress.finish(runtime, run_id, status="failed", canceled=exc.by_user,
                        error_message=str(exc), **exc.stats)
    except ConnectorError as exc:
        progress.finish(runtime, run_id, status="failed",
                        error_code=run_error_code(type(exc).__name__),
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
        mappings = _resolve_segment_membership(session, sync)
        session.expunge_all()
    key_field = next(m["to"] for m in sync.mappings if m["is_primary_identifier"])
    plan = Plan(sync, run, source, destination, query, key_field, mappings=mappings)
    _resolve_fields(plan)
    return plan


def _resolve_segment_membership(session: Any, sync: Sync) -> list[dict[str, Any]]:
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


def _resolve_fields(plan: Plan) -> None:
    """Read the destination object's fields: their types, and for
    ``sync_all_properties`` the same-named fields new source columns map to."""
    obj = None
    if not plan.destination.capabilities.file_system:
        obj = plan.destination.get_object(plan.sync.destination_object)
    if plan.settings.get("field_behavior") == "sync_all_properties":
        described = plan.source.query_columns(plan.query)
        columns = [c.name for c in described]
        names = None
        if obj is not None and not obj.allow_custom_fields:
            names = [f.full_name for f in obj.fields]
        normalization = plan.settings.get("field_normalization")
        added, skipped = auto_mappings(plan.mappings, columns, names, normalization)
        if skipped and obj is not None and isinstance(plan.destination, FieldCreator):
            obj = _create_fields(plan, obj, [c for c in described if c.name in skipped])
            names = [f.full_name for f in obj.fields]
            added, skipped = auto_mappings(plan.mappings, columns, names, normalization)
        plan.mappings += added
        if skipped:
            log.warning("sync %s: source columns without a destination field are not synced: %s",
                        plan.sync.id, ", ".join(skipped))
    if obj is not None:
        # A lookup's value is the parent's identifier, not of the reference field's type.
        targets = {m["to"] for m in plan.mappings if not m.get("lookup_object")}
        plan.types = {k: v for k, v in field_types(obj.fields).items() if k in targets}


def _create_fields(plan: Plan, obj: Any, columns: list[Any]) -> Any:
    """``sync_all_properties`` into a destination that can add fields (HubSpot
    properties): one field per source column it lacks, typed from the column. A field
    the destination refuses is logged and its column left out, as before."""
    creator: Any = plan.destination
    for column in columns:
        name = normalize_name(column.name, plan.settings.get("field_normalization"))
        try:
            creator.create_field(obj.full_name, name, sql_field_type(column.type))
        except ConnectorError as exc:
            log.warning("sync %s: could not create field %r: %s", plan.sync.id, name, exc)
    return plan.destination.get_object(obj.full_name)


def _execute(runtime: Runtime, run_id: int, stop: threading.Event) -> None:
    plan = _plan(runtime, run_id)
    store = open_store(runtime, plan)
    try:
        plan.full = _decide_full(store, plan)
        # Recorded now: a canceled or crashed run must not make the next one full. The
        # hashes already tell rows delivered under the new mappings from the others.
        store.set_meta("mappings", _mapping_fingerprint(plan.mappings))
        _stage(runtime, plan, store, stop)
        invalid, changed = store.classify(full=plan.full)
        if plan.sync.operation == "append" and store.source_count():
            assert isinstance(store, SnapshotStore)  # append always diffs engine-side
            changed = appending.select(store, plan.settings)
        removed = _removed(store, plan) if plan.sync.operation == "mirror" else 0
        _log_invalid(runtime, plan, store)
        counts = {
            "source_record_count": store.source_count() + plan.uncastable,
            "source_record_invalids": invalid + plan.uncastable,
            "source_record_updates": changed,
            "source_record_deletes": removed,
            "full_sync": plan.full,
        }
        plan.counts = counts
        progress.report(runtime, run_id, current_step="Loading data into destination service",
                        **counts)
        stats = _deliver(runtime, plan, store, stop, counts)
        if plan.sync.operation == "append":
            assert isinstance(store, SnapshotStore)  # see use_in_warehouse
            appending.finish(store)
        store.close()  # checks the snapshot in: a failure to save it fails the run
        notice = getattr(store, "notice", None)
        progress.finish(runtime, run_id, status="completed", **counts, **stats.as_counters(),
                        **({"error_message": notice} if notice else {}))
    finally:
        store.close()
        plan.source.close()
        plan.destination.close()


def _decide_full(store: Store, plan: Plan) -> bool:
    """A new target resets the snapshot; new mappings or a user request resend all."""
    target = json.dumps([plan.sync.destination_id, plan.sync.destination_object, plan.key_field,
                         plan.sync.operation])
    if store.meta("target") != target:
        store.reset()
        appending.reset(store)
        store.set_meta("target", target)
        return True
    if plan.sync.operation == "append":
        # Append syncs have no full sync: every run sends what is new.
        return False
    changed_mappings = store.meta("mappings") != _mapping_fingerprint(plan.mappings)
    return plan.run.force_full_sync or changed_mappings


def _mapping_fingerprint(mappings: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(mappings, sort_keys=True).encode()).hexdigest()


def _stage(runtime: Runtime, plan: Plan, store: Store, stop: threading.Event) -> None:
    progress.report(runtime, plan.run.id, current_step="Unloading data from warehouse")
    meta = {
        "sync_run_id": plan.run.id,
        "sync_id": plan.sync.id,
        "sync_started_at": utcnow().isoformat(),
        "record_synced_at": utcnow().isoformat(),
    }
    if isinstance(store, WarehouseDiff):  # needs_rows is False: the warehouse reads the model
        store.on_uncastable = lambda rows, reasons: _log_uncastable(
            runtime, plan, store, rows, reasons
        )
        return
    hwm = appending.hwm_attribute(plan.sync.operation, plan.settings)
    for batch in plan.source.read(plan.query, batch_size=runtime.settings.batch_size):
        if stop.is_set():
            raise Canceled("interrupted by shutdown before any record was sent", by_user=False)
        if progress.report(runtime, plan.run.id):
            raise Canceled("canceled by request before any record was sent", by_user=True)
        table = map_batch(batch, plan.mappings, meta)
        if hwm:
            table = table.append_column(appending.HWM, source_column(batch, hwm))
        coerced = coerce(table, plan.types)
        if coerced.invalid.num_rows:
            _log_uncastable(runtime, plan, store, coerced.invalid, coerced.reasons)
        store.stage(coerced.valid, plan.key_field, unhashed=_metadata_fields(plan))


def _metadata_fields(plan: Plan) -> frozenset[str]:
    """Fields mapped from sync metadata: their values change every run by design."""
    return frozenset(m["to"] for m in plan.mappings if m["from"]["type"] == "sync_metadata")


def _log_uncastable(
    runtime: Runtime, plan: Plan, store: Store, rows: pa.Table, reasons: list[str]
) -> None:
    """Rows with a value their field cannot hold are invalid, never sent. Their keys are
    remembered for this run so that a mirror sync does not delete those records."""
    plan.uncastable += rows.num_rows
    if plan.counts:  # found while delivering: these rows were counted as changed
        plan.counts["source_record_invalids"] += rows.num_rows
        plan.counts["source_record_updates"] -= rows.num_rows
    plan.uncastable_keys.append(rows.column(plan.key_field).cast(pa.string()).combine_chunks())
    payloads = [
        {k: v for k, v in row.items() if not k.startswith(HIDDEN_PREFIX)}
        for row in rows.to_pylist()
    ]
    records = [
        {"identifier": None if payload[plan.key_field] is None else str(payload[plan.key_field]),
         "reason": reason, "payload": payload}
        for payload, reason in zip(payloads, reasons, strict=True)
    ]
    progress.log_records(runtime, plan.run.id, records, status="invalid", operation=plan.label)


def _removed(store: Store, plan: Plan) -> int:
    """Mirror: what Reflow delivered and the model no longer has, except records whose
    row is still there but invalid this run."""
    kept = pa.chunked_array(plan.uncastable_keys, pa.string()).combine_chunks()
    return store.removed_count(keep=kept)


def _log_invalid(runtime: Runtime, plan: Plan, store: Store) -> None:
    if not store.source_count():
        return
    reader = store.batches("invalid", 10_000)
    for batch in reader:
        by_status: dict[str, list[dict[str, Any]]] = {"NULL": [], "DUPLICATE": []}
        for row in batch.to_pylist():
            key = row.pop(KEY)
            row = {k: v for k, v in row.items() if not k.startswith(HIDDEN_PREFIX)}
            if key is None:
                status, reason = "NULL", f"Matching ID {plan.key_field} is null"
            else:
                status, reason = "DUPLICATE", f"Duplicate value {key!r} of {plan.key_field}"
            by_status[status].append({"identifier": key, "reason": reason, "payload": row})
        for status, records in by_status.items():
            progress.log_records(runtime, plan.run.id, records, status=status,
                                 operation=plan.label)


def _batch_size(runtime: Runtime, plan: Plan, writer: BatchWriter) -> int:
    size = min(runtime.settings.batch_size, plan.destination.capabilities.batch_size)
    if writer.pipeline_depth:
        # A pipelined writer cuts batches into its own requests (``batch_size`` is its
        # records per request) and batch boundaries are no barrier for it: a batch of
        # one request would only multiply the engine's per-batch work.
        return size
    wanted = (plan.settings.get("advanced_configuration") or {}).get("batch_size")
    return min(size, wanted) if isinstance(wanted, int) and wanted > 0 else size


def _deliver(
    runtime: Runtime, plan: Plan, store: Store, stop: threading.Event,
    counts: dict[str, Any],
) -> DeliveryStats:
    ctx = WriteContext(
        sync_id=plan.sync.id,
        run_id=plan.run.id,
        object_name=plan.sync.destination_object,
        key_field=plan.key_field,
        fields=tuple(m["to"] for m in plan.mappings),
        options=plan.settings.get("advanced_configuration") or {},
        keep_on_null=frozenset(
            m["to"] for m in plan.mappings if m.get("sync_null_values", True) is False
        ),
        set_if_empty=frozenset(m["to"] for m in plan.mappings if m.get("preserve_values")),
        lookups={m["to"]: (m["lookup_object"], m["lookup_field"])
                 for m in plan.mappings if m.get("lookup_object")},
    )
    writer: BatchWriter = plan.destination.open_writer(ctx)
    d = Delivery(runtime, plan.run.id, writer, store, stop, counts,
                 SucceededLog(runtime.settings.home, plan.run.id,
                              on_part=runtime.run_files.saved))
    batch_size = _batch_size(runtime, plan, writer)
    try:
        check(d)  # a cancel asked for while the diff ran stops before any record is sent
        action = CHANGED_ACTION[plan.sync.operation]
        if store.source_count():
            for batch in store.batches("changed", batch_size):
                deliver(d, batch, action, operation=plan.label)
        if plan.sync.operation == "mirror":
            _delete_removed(plan, store, d, batch_size)
    except BaseException:
        finish_writer(d, failed=True)
        raise
    finish_writer(d, failed=False)
    return d.stats


def _delete_removed(plan: Plan, store: Store, d: Delivery, batch_size: int) -> None:
    """Mirror: delete what Reflow itself delivered and the model no longer has."""
    for batch in store.batches("removed", batch_size):
        keys = batch.column(0)
        payload = pa.RecordBatch.from_arrays(
            [keys, keys, pa.nulls(len(keys), pa.string())], names=[plan.key_field, KEY, HASH]
        )
        deliver(d, payload, "delete", operation="delete", removal=True)
