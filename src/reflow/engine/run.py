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
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from reflow.connectors.base import (
    BatchWriter,
    DestinationConnector,
    SourceConnector,
    WriteContext,
)
from reflow.connectors.errors import ConnectorError
from reflow.connectors.saas.metadata import FieldCreator, sql_field_type
from reflow.engine import appending, memory
from reflow.engine.mapping import (
    auto_mappings,
    coerce,
    field_types,
    map_batch,
    normalize_name,
    source_column,
)
from reflow.engine.plan import RunPlan, RunReporter
from reflow.engine.records import SucceededLog
from reflow.engine.snapshot import HASH, KEY, SnapshotStore, refused_key
from reflow.engine.warehouse_diff import WarehouseDiff, open_store
from reflow.engine.writing import (
    HIDDEN_PREFIX,
    PROGRESS_INTERVAL,
    Canceled,
    Delivery,
    DeliveryStats,
    check,
    deliver,
    finish_writer,
)
from reflow.errors import run_error_code
from reflow.timestamps import utcnow

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
class Execution:
    """A plan being executed: what the run learns on the way."""

    plan: RunPlan
    reporter: RunReporter
    #: The plan's mappings plus those ``sync_all_properties`` adds for this run.
    mappings: list[dict[str, Any]] = field(default_factory=list)
    #: Destination field -> (its type, the Arrow type values are cast to).
    types: dict[str, tuple[str, pa.DataType]] = field(default_factory=dict)
    full: bool = False
    uncastable: int = 0
    #: This run's keys of rows with a value their field's type cannot hold (see ``_stage``).
    uncastable_keys: list[pa.Array] = field(default_factory=list)
    #: The run's counters once the diff has set them; rows found uncastable after that
    #: (the in-warehouse diff coerces while delivering) are moved into ``invalid`` here.
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        return self.plan.settings


def execute(plan: RunPlan, reporter: RunReporter, stop: threading.Event | None = None) -> None:
    """Execute ``plan``, reporting to ``reporter`` and ending it with ``finish``; never
    raises. The plan's connectors are closed at the end."""
    memory.return_freed_memory()
    try:
        _execute(Execution(plan, reporter, mappings=list(plan.mappings)),
                 stop or threading.Event())
    except Exception as exc:  # the run must end failed, never stay working
        reporter.finish(status="failed", **failure(exc, run_id=plan.run_id))


def failure(exc: Exception, *, run_id: int) -> dict[str, Any]:
    """How a run that raised ``exc`` ends (``finish``'s values besides the status)."""
    if isinstance(exc, Canceled):
        return {"canceled": exc.by_user, "error_message": str(exc), **exc.stats}
    if isinstance(exc, ConnectorError):
        return {"error_code": run_error_code(type(exc).__name__), "error_message": str(exc)}
    log.error("run %s failed", run_id, exc_info=exc)
    return {"error_code": "INTERNAL_ERROR", "error_message": f"{type(exc).__name__}: {exc}"}


@dataclass(frozen=True)
class Fields:
    """The destination fields a sync's records go to, as a run resolves them."""

    #: The sync's mappings plus those ``sync_all_properties`` adds.
    mappings: list[dict[str, Any]]
    #: Destination field -> (its type, the Arrow type values are cast to).
    types: dict[str, tuple[str, pa.DataType]]
    #: Source columns ``sync_all_properties`` leaves out (no such destination field).
    skipped: list[str]


def resolve_fields(
    source: SourceConnector, destination: DestinationConnector, object_name: str, query: str,
    mappings: list[dict[str, Any]], settings: dict[str, Any], *, create: bool,
    sync_id: int | None = None,
) -> Fields:
    """Read the destination object's fields: their types, and for
    ``sync_all_properties`` the same-named fields new source columns map to. With
    ``create``, fields the destination lacks are created where it can (a run; a dry run
    creates nothing)."""
    obj = None
    if not destination.capabilities.file_system:
        obj = destination.get_object(object_name)
    mappings, skipped = list(mappings), list[str]()
    if settings.get("field_behavior") == "sync_all_properties":
        described = source.query_columns(query)
        columns = [c.name for c in described]
        names = None
        if obj is not None and not obj.allow_custom_fields:
            names = [f.full_name for f in obj.fields]
        normalization = settings.get("field_normalization")
        added, skipped = auto_mappings(mappings, columns, names, normalization)
        if create and skipped and obj is not None and isinstance(destination, FieldCreator):
            obj = _create_fields(destination, obj, [c for c in described if c.name in skipped],
                                 normalization, sync_id)
            names = [f.full_name for f in obj.fields]
            added, skipped = auto_mappings(mappings, columns, names, normalization)
        mappings += added
    types: dict[str, tuple[str, pa.DataType]] = {}
    if obj is not None:
        # A lookup's value is the parent's identifier, not of the reference field's type.
        targets = {m["to"] for m in mappings if not m.get("lookup_object")}
        types = {k: v for k, v in field_types(obj.fields).items() if k in targets}
    return Fields(mappings, types, skipped)


def _resolve_fields(x: Execution) -> None:
    plan = x.plan
    fields = resolve_fields(plan.source, plan.destination, plan.object_name, plan.query,
                            x.mappings, x.settings, create=True, sync_id=plan.sync_id)
    if fields.skipped:
        log.warning("sync %s: source columns without a destination field are not synced: %s",
                    plan.sync_id, ", ".join(fields.skipped))
    x.mappings, x.types = fields.mappings, fields.types


def _create_fields(destination: Any, obj: Any, columns: list[Any],
                   normalization: str | None, sync_id: int | None) -> Any:
    """``sync_all_properties`` into a destination that can add fields (HubSpot
    properties): one field per source column it lacks, typed from the column. A field
    the destination refuses is logged and its column left out, as before."""
    for column in columns:
        name = normalize_name(column.name, normalization)
        try:
            destination.create_field(obj.full_name, name, sql_field_type(column.type))
        except ConnectorError as exc:
            log.warning("sync %s: could not create field %r: %s", sync_id, name, exc)
    return destination.get_object(obj.full_name)


def _execute(x: Execution, stop: threading.Event) -> None:
    plan, reporter = x.plan, x.reporter
    store: Store | None = None
    try:
        _resolve_fields(x)
        store = open_store(plan, mappings=x.mappings, types=x.types)
        x.full = _decide_full(store, x)
        # Recorded now: a canceled or crashed run must not make the next one full. The
        # hashes already tell rows delivered under the new mappings from the others.
        store.set_meta("mappings", _mapping_fingerprint(x.mappings))
        _stage(x, store, stop)
        invalid, changed = store.classify(full=x.full)
        if plan.operation == "append" and store.source_count():
            assert isinstance(store, SnapshotStore)  # append always diffs engine-side
            changed = appending.select(store, x.settings)
        removed = _removed(store, x) if plan.operation == "mirror" else 0
        _log_invalid(x, store)
        counts = {
            "source_record_count": store.source_count() + x.uncastable,
            "source_record_invalids": invalid + x.uncastable,
            "source_record_updates": changed,
            "source_record_deletes": removed,
            "full_sync": x.full,
        }
        x.counts = counts
        reporter.progress(current_step="Loading data into destination service", **counts)
        stats = _deliver(x, store, stop, counts)
        if plan.operation == "append":
            assert isinstance(store, SnapshotStore)  # see use_in_warehouse
            appending.finish(store)
        store.close()  # checks the snapshot in: a failure to save it fails the run
        notice = getattr(store, "notice", None)
        reporter.finish(status="completed", **counts, **stats.as_counters(),
                        **({"error_message": notice} if notice else {}))
    finally:
        if store is not None:
            store.close()
        plan.source.close()
        plan.destination.close()


def _decide_full(store: Store, x: Execution) -> bool:
    """A new target resets the snapshot; new mappings or a user request resend all."""
    plan = x.plan
    target = json.dumps([plan.destination_id, plan.object_name, plan.key_field, plan.operation])
    if store.meta("target") != target:
        store.reset()
        appending.reset(store)
        store.set_meta("target", target)
        return True
    if plan.operation == "append":
        # Append syncs have no full sync: every run sends what is new.
        return False
    changed_mappings = store.meta("mappings") != _mapping_fingerprint(x.mappings)
    return plan.force_full or changed_mappings


def _mapping_fingerprint(mappings: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(mappings, sort_keys=True).encode()).hexdigest()


#: Rows of a batch read from the source for staging. The stage inserts several batches
#: at once (``snapshot.STAGE_ROWS``, a DuckDB row group), so smaller reads cost nothing
#: there; they only hold less at once (the batch read ahead, the one mapped, the one
#: coerced).
READ_ROWS = 10_000


def _stage(x: Execution, store: Store, stop: threading.Event) -> None:
    plan = x.plan
    x.reporter.progress(current_step="Unloading data from warehouse")
    meta = {
        "sync_run_id": plan.run_id,
        "sync_id": plan.sync_id,
        "sync_started_at": utcnow().isoformat(),
        "record_synced_at": utcnow().isoformat(),
    }
    if isinstance(store, WarehouseDiff):  # needs_rows is False: the warehouse reads the model
        store.on_uncastable = lambda rows, reasons: _log_uncastable(x, rows, reasons)
        return
    hwm = appending.hwm_attribute(plan.operation, x.settings)
    reported = float("-inf")
    for batch in plan.source.read(plan.query, batch_size=min(plan.batch_size, READ_ROWS)):
        if stop.is_set():
            raise Canceled("interrupted by shutdown before any record was sent", by_user=False)
        # The heartbeat and the cancel flag, at most every PROGRESS_INTERVAL as while
        # delivering: once per 10,000-row batch, its transactions took 0.7-1.0 s of a
        # 1M-row no-change re-sync with SQLite state (a third of the run).
        now = time.monotonic()
        if now - reported >= PROGRESS_INTERVAL:
            reported = now
            if x.reporter.progress():
                raise Canceled("canceled by request before any record was sent", by_user=True)
        table = map_batch(batch, x.mappings, meta)
        if hwm:
            table = table.append_column(appending.HWM, source_column(batch, hwm))
        coerced = coerce(table, x.types)
        if coerced.invalid.num_rows:
            _log_uncastable(x, coerced.invalid, coerced.reasons)
        store.stage(coerced.valid, plan.key_field, unhashed=_metadata_fields(x))


def _metadata_fields(x: Execution) -> frozenset[str]:
    """Fields mapped from sync metadata: their values change every run by design."""
    return frozenset(m["to"] for m in x.mappings if m["from"]["type"] == "sync_metadata")


def _log_uncastable(x: Execution, rows: pa.Table, reasons: list[str]) -> None:
    """Rows with a value their field cannot hold are invalid, never sent. Their keys are
    remembered for this run so that a mirror sync does not delete those records."""
    key_field = x.plan.key_field
    x.uncastable += rows.num_rows
    if x.counts:  # found while delivering: these rows were counted as changed
        x.counts["source_record_invalids"] += rows.num_rows
        x.counts["source_record_updates"] -= rows.num_rows
    x.uncastable_keys.append(rows.column(key_field).cast(pa.string()).combine_chunks())
    payloads = [
        {k: v for k, v in row.items() if not k.startswith(HIDDEN_PREFIX)}
        for row in rows.to_pylist()
    ]
    records = [
        {"identifier": None if payload[key_field] is None else str(payload[key_field]),
         "reason": reason, "payload": payload}
        for payload, reason in zip(payloads, reasons, strict=True)
    ]
    x.reporter.log_records(records, status="invalid", operation=x.plan.label)


def _removed(store: Store, x: Execution) -> int:
    """Mirror: what Reflow delivered and the model no longer has, except records whose
    row is still there but invalid this run."""
    kept = pa.chunked_array(x.uncastable_keys, pa.string()).combine_chunks()
    return store.removed_count(keep=kept)


def _log_invalid(x: Execution, store: Store) -> None:
    if not store.source_count():
        return
    key_field = x.plan.key_field
    reader = store.batches("invalid", 10_000)
    for batch in reader:
        by_status: dict[str, list[dict[str, Any]]] = {"NULL": [], "DUPLICATE": []}
        for row in batch.to_pylist():
            key = row.pop(KEY)
            row = {k: v for k, v in row.items() if not k.startswith(HIDDEN_PREFIX)}
            status, reason = refused_key(key, key_field)
            by_status[status].append({"identifier": key, "reason": reason, "payload": row})
        for status, records in by_status.items():
            x.reporter.log_records(records, status=status, operation=x.plan.label)


def _batch_size(x: Execution, writer: BatchWriter) -> int:
    size = min(x.plan.batch_size, x.plan.destination.capabilities.batch_size)
    if writer.cuts_requests:
        # Such a writer cuts batches into its own requests (``batch_size`` is its
        # records per request) and batch boundaries are no barrier for it: a batch of
        # one request would only multiply the engine's per-batch work.
        return size
    wanted = (x.settings.get("advanced_configuration") or {}).get("batch_size")
    return min(size, wanted) if isinstance(wanted, int) and wanted > 0 else size


def _deliver(
    x: Execution, store: Store, stop: threading.Event, counts: dict[str, Any]
) -> DeliveryStats:
    plan = x.plan
    ctx = WriteContext(
        sync_id=plan.sync_id,
        run_id=plan.run_id,
        object_name=plan.object_name,
        key_field=plan.key_field,
        fields=tuple(m["to"] for m in x.mappings),
        options=x.settings.get("advanced_configuration") or {},
        keep_on_null=frozenset(
            m["to"] for m in x.mappings if m.get("sync_null_values", True) is False
        ),
        set_if_empty=frozenset(m["to"] for m in x.mappings if m.get("preserve_values")),
        lookups={m["to"]: (m["lookup_object"], m["lookup_field"])
                 for m in x.mappings if m.get("lookup_object")},
    )
    writer: BatchWriter = plan.destination.open_writer(ctx)
    d = Delivery(x.reporter, plan.run_id, writer, store, stop, counts,
                 SucceededLog(plan.storage.records_home, plan.run_id,
                              on_part=plan.storage.on_record_part))
    batch_size = _batch_size(x, writer)
    try:
        check(d)  # a cancel asked for while the diff ran stops before any record is sent
        action = CHANGED_ACTION[plan.operation]
        if store.source_count():
            for batch in store.batches("changed", batch_size):
                deliver(d, batch, action, operation=plan.label)
        if plan.operation == "mirror":
            _delete_removed(plan, store, d, batch_size)
    except BaseException as exc:
        finish_writer(d, failed=True)
        # Batches in flight when the run stopped were settled since, and those that
        # succeeded acknowledged: the run's counters include them.
        if isinstance(exc, Canceled):
            exc.stats = {**d.counts, **d.stats.as_counters()}
        else:
            _report_counters(d)
        raise
    finish_writer(d, failed=False)
    return d.stats


def _report_counters(d: Delivery) -> None:
    try:
        d.reporter.progress(**d.counts, **d.stats.as_counters())
    except Exception:  # noqa: BLE001 - the run's own failure is the one to report
        log.exception("run %s: its last counters could not be recorded", d.run_id)


def _delete_removed(plan: RunPlan, store: Store, d: Delivery, batch_size: int) -> None:
    """Mirror: delete what Reflow itself delivered and the model no longer has."""
    for batch in store.batches("removed", batch_size):
        keys = batch.column(0)
        payload = pa.RecordBatch.from_arrays(
            [keys, keys, pa.nulls(len(keys), pa.string())], names=[plan.key_field, KEY, HASH]
        )
        deliver(d, payload, "delete", operation="delete", removal=True)
