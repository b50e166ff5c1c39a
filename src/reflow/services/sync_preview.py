"""A dry run of a sync that is not saved yet: what its first run would create, update,
delete and refuse, computed with the engine's own mapping, type coercion and diff.

Nothing is written: not to the destination (no writer is opened), not to a snapshot
(the engine's diff runs in a throwaway DuckDB file, empty like a new sync's) and not to
the state database (the sync is validated by the same checks as ``POST /syncs`` but
never added to the session). The work is bounded: at most ``limit`` source rows are
read, through ``SELECT * FROM (query) LIMIT n`` so the warehouse stops early; when the
source holds more, one ``COUNT(*)`` says how many, and the counts describe the rows read.

What "update" means for a new sync: its snapshot is empty, so every valid row is sent.
Whether the destination already holds a record with that key decides between a create
and an update for ``upsert`` and ``mirror``, and no destination connector offers a key
lookup without writing; the preview says "creates or updates" for them instead of
guessing. ``insert`` and ``append`` only create, ``update`` only updates (a key the
destination lacks is rejected by it), ``delete`` only deletes; ``mirror`` deletes
only records Reflow delivered before, so none on a first run.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from reflow.connectors.base import DestinationConnector, SourceConnector
from reflow.connectors.errors import ConnectorError
from reflow.crypto import Vault
from reflow.db.tables import Sync
from reflow.engine.mapping import coerce, map_batch
from reflow.engine.run import resolve_fields
from reflow.engine.snapshot import HASH, KEY, SnapshotStore, refused_key
from reflow.errors import BadRequest
from reflow.services import destinations, sources, syncs
from reflow.services.source_objects import query_for

#: Source rows a preview reads at most (the API accepts a smaller ``limit``).
PREVIEW_LIMIT = 10_000
SAMPLE_RECORDS = 5
SAMPLE_INVALID = 20


@dataclass
class InvalidRecord:
    identifier: str | None
    reason: str
    payload: dict[str, Any]


@dataclass
class SyncPreview:
    operation: str
    key_field: str
    limit: int
    rows_read: int
    #: Rows the source object holds, when more than ``limit`` (else ``rows_read``).
    source_rows: int
    creates: int = 0
    updates: int = 0
    #: upsert and mirror: sent, and the destination decides between create and update.
    creates_or_updates: int = 0
    deletes: int = 0
    invalid: int = 0
    invalid_records: list[InvalidRecord] = field(default_factory=list)
    #: A few records as they would be sent: destination field names, coerced values.
    samples: list[dict[str, Any]] = field(default_factory=list)
    #: Source columns ``sync_all_properties`` leaves out (no such destination field).
    skipped_columns: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.source_rows > self.rows_read

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation, "sync_key": self.key_field,
            "limit": self.limit, "rows_read": self.rows_read,
            "source_rows": self.source_rows, "truncated": self.truncated,
            "creates": self.creates, "updates": self.updates,
            "creates_or_updates": self.creates_or_updates, "deletes": self.deletes,
            "invalid": self.invalid,
            "invalid_records": [vars(r) for r in self.invalid_records],
            "sample_records": self.samples, "skipped_columns": self.skipped_columns,
        }


def preview(session: Session, *, workspace_id: int, vault: Vault, body: dict[str, Any],
            limit: int = PREVIEW_LIMIT) -> SyncPreview:
    """Dry-run the ``POST /syncs`` body ``body``. Raises BadRequest (naming the field)
    for a body ``POST /syncs`` would refuse, or when the source cannot be read."""
    if not 1 <= limit <= PREVIEW_LIMIT:
        raise BadRequest(f"limit must be between 1 and {PREVIEW_LIMIT}")
    sync = syncs.validated(session, workspace_id=workspace_id, vault=vault, body=body)
    if any(m["from"]["type"] == "segment_membership" for m in sync.mappings):
        raise BadRequest("mappings: segment_membership cannot be previewed yet")
    source = _connector(sources, sources.get(
        session, workspace_id=workspace_id, source_id=sync.source_id), vault, "source")
    try:
        destination = _connector(destinations, destinations.get(
            session, workspace_id=workspace_id, destination_id=sync.destination_id), vault,
            "destination")
        try:
            return _run(session, sync, source, destination, limit)
        finally:
            destination.close()
    finally:
        source.close()


def _connector(service: Any, row: Any, vault: Vault, kind: str) -> Any:
    try:
        return service.connector(row, vault=vault)
    except Exception as exc:  # undecryptable or no longer valid credentials
        raise BadRequest(f"{kind}_attributes: {kind} {row.id} cannot be used: {exc}") from exc


def _run(session: Session, sync: Sync, source: SourceConnector,
         destination: DestinationConnector, limit: int) -> SyncPreview:
    try:
        query = query_for(session, sync=sync, connector=source).strip().rstrip(";").strip()
    except LookupError as exc:
        raise BadRequest(f"source_attributes: {exc}") from exc
    key_field = next(m["to"] for m in sync.mappings if m["is_primary_identifier"])
    try:  # as a run resolves them, except that a preview never creates fields
        fields = resolve_fields(source, destination, sync.destination_object, query,
                                sync.mappings, sync.settings or {}, create=False)
    except ConnectorError as exc:
        raise BadRequest(f"destination_attributes: {exc}") from exc
    result = SyncPreview(sync.operation, key_field, limit, 0, 0, skipped_columns=fields.skipped)
    with tempfile.TemporaryDirectory(prefix="reflow-preview-") as tmp:
        store = SnapshotStore(Path(tmp) / "snapshot.duckdb")
        try:
            _stage(result, store, source, query, fields.mappings, fields.types)
            invalid, changed = store.classify(full=True)
            _diffed(result, store, invalid, changed)
            result.source_rows = result.rows_read
            if result.rows_read >= limit:
                result.source_rows = _count(source, query)
        except ConnectorError as exc:
            raise BadRequest(f"source_attributes: {exc}") from exc
        finally:
            store.close()
    return result


def _stage(result: SyncPreview, store: SnapshotStore, source: SourceConnector, query: str,
           mappings: list[dict[str, Any]], types: dict[str, Any]) -> None:
    """The first ``result.limit`` rows read, mapped and coerced as a run does; rows whose
    values do not fit are counted invalid, the others staged for the diff."""
    now = dt.datetime.now(dt.UTC).isoformat()
    meta = {"sync_run_id": None, "sync_id": None, "sync_started_at": now,
            "record_synced_at": now}
    limit = result.limit
    sql = f"SELECT * FROM ({query}) AS reflow_preview LIMIT {limit + 1}"
    for batch in source.read(sql, batch_size=limit + 1):
        batch = batch.slice(0, limit - result.rows_read)
        result.rows_read += batch.num_rows
        coerced = coerce(map_batch(batch, mappings, meta), types)
        _uncastable(result, coerced.invalid, coerced.reasons, result.key_field)
        store.stage(coerced.valid, result.key_field)
        if result.rows_read >= limit:
            return


def _uncastable(result: SyncPreview, rows: pa.Table, reasons: list[str], key: str) -> None:
    result.invalid += rows.num_rows
    room = SAMPLE_INVALID - len(result.invalid_records)
    for row, reason in list(zip(rows.to_pylist(), reasons, strict=True))[:max(room, 0)]:
        value = row.get(key)
        result.invalid_records.append(
            InvalidRecord(None if value is None else str(value), reason, row))


def _diffed(result: SyncPreview, store: SnapshotStore, invalid: int, changed: int) -> None:
    """Counts and samples from the engine's diff against an empty snapshot."""
    result.invalid += invalid
    if invalid:
        room = SAMPLE_INVALID - len(result.invalid_records)
        for row in _first(store, "invalid", room, strip=False):
            key = row.pop(KEY)
            row.pop(HASH)
            _, reason = refused_key(key, result.key_field)
            result.invalid_records.append(InvalidRecord(key, reason, row))
    result.samples = _first(store, "changed", SAMPLE_RECORDS) if changed else []
    op = result.operation
    if op in ("upsert", "mirror"):
        result.creates_or_updates = changed
    elif op in ("insert", "append"):
        result.creates = changed
    elif op == "update":
        result.updates = changed
    elif op == "delete":
        result.deletes = changed


def _first(store: SnapshotStore, table: str, n: int, *, strip: bool = True,
           ) -> list[dict[str, Any]]:
    """The first ``n`` rows of one of the diff's tables; ``strip`` drops its key and hash."""
    if n <= 0:
        return []
    rows = store.batches(table, n).read_next_batch().slice(0, n).to_pylist()
    hidden = (KEY, HASH) if strip else ()
    return [{k: v for k, v in row.items() if k not in hidden} for row in rows]


def _count(source: SourceConnector, query: str) -> int:
    rows = [r for b in source.read(f"SELECT COUNT(*) AS n FROM ({query}) AS reflow_preview")
            for r in b.to_pylist()]
    return int(rows[0]["n"] or 0) if rows else 0

