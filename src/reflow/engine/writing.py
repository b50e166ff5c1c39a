"""Delivering one batch: retries for transient failures, splitting for rejected
batches, and the snapshot committed for exactly the acknowledged records."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from reflow.connectors.base import BatchWriter, RejectedRecord
from reflow.connectors.errors import BatchRejected, TransientError
from reflow.engine import progress
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.runtime import Runtime

TRANSIENT_ATTEMPTS = 5


class Canceled(Exception):
    def __init__(self, message: str, *, by_user: bool, stats: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.by_user = by_user
        self.stats = stats or {}


@dataclass
class DeliveryStats:
    processed: int = 0
    accepted: int = 0
    rejected: int = 0

    def as_counters(self) -> dict[str, int]:
        return {
            "records_processed": self.processed,
            "records_updated": self.accepted,
            "records_failed": self.rejected,
        }


def deliver(
    runtime: Runtime,
    run_id: int,
    writer: BatchWriter,
    store: SnapshotStore,
    batch: pa.RecordBatch,
    action: str,
    stats: DeliveryStats,
    stop: threading.Event,
    counts: dict[str, Any],
    *,
    operation: str,
) -> None:
    keys = batch.column(KEY)
    payload = batch.select([n for n in batch.schema.names if n not in (KEY, HASH)])
    rejected = _write_split(writer, payload, action, offset=0)
    mask = _accepted_mask(batch.num_rows, rejected)
    if action == "delete":
        _commit_deleted(store, keys, mask, operation)
    else:
        store.commit_delivered(pc.filter(keys, mask), pc.filter(batch.column(HASH), mask))
    _log_rejected(runtime, run_id, payload, keys, rejected, operation)
    stats.processed += batch.num_rows
    stats.rejected += len(rejected)
    stats.accepted += batch.num_rows - len(rejected)
    cancel = progress.report(runtime, run_id, **counts, **stats.as_counters())
    if cancel or stop.is_set():
        raise Canceled(
            "canceled by request" if cancel else "interrupted by shutdown; the next run resends",
            by_user=cancel,
            stats={**counts, **stats.as_counters()},
        )


def _commit_deleted(store: SnapshotStore, keys: pa.Array, mask: pa.Array, operation: str) -> None:
    accepted = pc.filter(keys, mask)
    if operation == "delete":
        # A delete sync remembers what it deleted, so it is not deleted again.
        store.commit_delivered(accepted, pa.array(["deleted"] * len(accepted)))
    else:
        store.commit_removed(accepted)


def _accepted_mask(n: int, rejected: list[RejectedRecord]) -> pa.Array:
    flags = [True] * n
    for record in rejected:
        flags[record.index] = False
    return pa.array(flags)


def _write_split(
    writer: BatchWriter, batch: pa.RecordBatch, action: str, *, offset: int
) -> list[RejectedRecord]:
    """Write; a batch rejected as a whole is halved until the bad records are alone."""
    try:
        result = _write_retrying(writer, batch, action)
    except BatchRejected as exc:
        if batch.num_rows == 1:
            return [RejectedRecord(offset, str(exc))]
        half = batch.num_rows // 2
        return _write_split(writer, batch.slice(0, half), action, offset=offset) + _write_split(
            writer, batch.slice(half), action, offset=offset + half
        )
    return [RejectedRecord(offset + r.index, r.reason) for r in result.rejected]


def _write_retrying(writer: BatchWriter, batch: pa.RecordBatch, action: str) -> Any:
    for attempt in Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(TRANSIENT_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=30),
        before_sleep=_honour_retry_after,
        reraise=True,
    ):
        with attempt:
            return writer.write(batch, action)  # type: ignore[arg-type]
    raise AssertionError("unreachable")


def _honour_retry_after(state: Any) -> None:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, TransientError) and exc.retry_after:
        time.sleep(min(exc.retry_after, 300))


def _log_rejected(
    runtime: Runtime,
    run_id: int,
    payload: pa.RecordBatch,
    keys: pa.Array,
    rejected: list[RejectedRecord],
    operation: str,
) -> None:
    if not rejected:
        return
    records = [
        {
            "identifier": keys[r.index].as_py(),
            "reason": r.reason,
            "payload": payload.slice(r.index, 1).to_pylist()[0],
        }
        for r in rejected
    ]
    progress.log_records(runtime, run_id, records, status="rejected", operation=operation)
