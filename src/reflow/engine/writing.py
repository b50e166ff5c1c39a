"""Delivering one batch: retries for transient failures, splitting for rejected
batches, and the snapshot committed for exactly the acknowledged records."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from reflow.connectors.base import BatchWriter, RejectedRecord
from reflow.connectors.errors import BatchRejected, TransientError
from reflow.db.tables import utcnow
from reflow.engine import progress
from reflow.engine.records import SucceededLog
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.runtime import Runtime

log = logging.getLogger(__name__)

TRANSIENT_ATTEMPTS = 5
#: Columns the engine carries next to the payload; never sent to the destination.
HIDDEN_PREFIX = "__reflow_"


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


class AfterAck:
    """What follows a batch's acknowledgement (its snapshot commit and its part of the
    succeeded-records log), done in order on one thread of its own while the next
    batch is written: both talk to other systems than the destination, so they
    overlap with it instead of adding to it. At most ``depth`` batches wait, which
    bounds the memory they hold; ``drain`` waits for all of them and raises the first
    failure. Nothing is committed before its batch was acknowledged."""

    def __init__(self, depth: int = 1) -> None:
        self.depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()

    def submit(self, work: Callable[[], None]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reflow-ack")
        while self._pending and (len(self._pending) >= self.depth or self._pending[0].done()):
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(work))

    def drain(self) -> None:
        failure: BaseException | None = None
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as exc:  # the rest still runs; the first failure is raised
                failure = failure or exc
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if failure is not None:
            raise failure


@dataclass
class Delivery:
    """What every batch of one run is delivered with."""

    runtime: Runtime
    run_id: int
    writer: BatchWriter
    store: SnapshotStore
    stop: threading.Event
    counts: dict[str, Any]
    succeeded: SucceededLog
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    after: AfterAck = field(default_factory=AfterAck)
    #: Acknowledged (keys, hashes or None for removals) awaiting the writer's close,
    #: for writers whose writes become durable only then.
    pending: list[tuple[pa.Array, pa.Array | None]] = field(default_factory=list)

    def acknowledge(self, keys: pa.Array, hashes: pa.Array | None) -> None:
        """Record delivered keys (``hashes`` None: removed keys) in the snapshot, or
        hold them until ``commit_pending`` when the writer publishes at close."""
        if not self.writer.durable_on_write:
            self.pending.append((keys, hashes))
        elif hashes is None:
            self.store.commit_removed(keys)
        else:
            self.store.commit_delivered(keys, hashes)

    def commit_pending(self) -> None:
        """The writer closed successfully: what it acknowledged is now published."""
        pending, self.pending = self.pending, []
        for keys, hashes in pending:
            if hashes is None:
                self.store.commit_removed(keys)
            else:
                self.store.commit_delivered(keys, hashes)


def payload_of(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.select([n for n in batch.schema.names if not n.startswith(HIDDEN_PREFIX)])


def deliver(
    d: Delivery, batch: pa.RecordBatch, action: str, *, operation: str, removal: bool = False
) -> None:
    """Send one batch with ``action``; ``operation`` labels its records; ``removal``
    marks mirror deletes, which leave the snapshot instead of entering it."""
    keys = batch.column(KEY)
    payload = payload_of(batch)
    started = utcnow()
    rejected = _write_split(d.writer, payload, action, offset=0)
    completed = utcnow()
    accepted, accepted_keys = payload, keys
    hashes = None if removal else batch.column(HASH)
    if rejected:  # filtering copies the batch, so only when something must be left out
        mask = _accepted_mask(batch.num_rows, rejected)
        accepted, accepted_keys = payload.filter(mask), pc.filter(keys, mask)
        hashes = None if hashes is None else pc.filter(hashes, mask)

    def after_ack() -> None:
        d.acknowledge(accepted_keys, hashes)
        d.succeeded.write(accepted, accepted_keys, operation=operation,
                          started=started, completed=completed)

    d.after.submit(after_ack)
    _log_rejected(d.runtime, d.run_id, payload, keys, rejected, operation)
    d.stats.processed += batch.num_rows
    d.stats.rejected += len(rejected)
    d.stats.accepted += batch.num_rows - len(rejected)
    check(d)


def finish_writer(d: Delivery, *, failed: bool) -> None:
    """End the writer. A writer that publishes only at close drops its unpublished
    output when the run failed; its records were never committed to the snapshot,
    so the next run sends them again. Otherwise what it acknowledged is committed
    once close has published it. Acknowledged batches are committed first, also when
    the run failed: they were delivered."""
    try:
        d.after.drain()
    except Exception:
        if not failed:
            _end_writer(d, failed=True)
            raise
        log.exception("run %s: committing acknowledged batches failed; the next run"
                      " sends them again", d.run_id)
    _end_writer(d, failed=failed)


def _end_writer(d: Delivery, *, failed: bool) -> None:
    if failed and not d.writer.durable_on_write:
        d.writer.abort()
        return
    d.writer.close()
    if not failed:
        d.commit_pending()


def check(d: Delivery) -> None:
    """Report progress; stop here (a batch boundary) when asked to."""
    cancel = progress.report(d.runtime, d.run_id, **d.counts, **d.stats.as_counters())
    if cancel or d.stop.is_set():
        raise Canceled(
            "canceled by request" if cancel else "interrupted by shutdown; the next run resends",
            by_user=cancel,
            stats={**d.counts, **d.stats.as_counters()},
        )


def _accepted_mask(n: int, rejected: list[RejectedRecord]) -> pa.Array:
    flags = [True] * n
    for record in rejected:
        flags[record.index] = False
    return pa.array(flags, pa.bool_())


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
