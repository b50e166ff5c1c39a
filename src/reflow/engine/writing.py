"""Delivering one batch: retries for transient failures, splitting for rejected
batches, and the snapshot committed for exactly the acknowledged records.

A writer with a ``pipeline_depth`` (the HTTP destinations, PostgreSQL) is given the
next batches while earlier ones are in flight; its batches are settled in the order
they were submitted, and only a settled batch is acknowledged. Acknowledgements are
committed on a thread of their own (those of a writer that cuts its own requests, the
HTTP ones, in groups: after a crash at most ``ACK_GROUP_ROWS`` records or
``ACK_GROUP_SECONDS`` of them more are resent), and progress is written at most every
``PROGRESS_INTERVAL`` seconds: a snapshot commit and a progress write per small batch
cost more than sending the batch."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from reflow.connectors.base import BatchWriter, RejectedRecord, WriteResult
from reflow.connectors.errors import BatchRejected, TransientError
from reflow.engine.plan import RunReporter
from reflow.engine.records import SucceededLog
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.timestamps import utcnow

if TYPE_CHECKING:
    from reflow.engine.warehouse_diff import WarehouseDiff

log = logging.getLogger(__name__)

TRANSIENT_ATTEMPTS = 5
#: Seconds between two progress writes (counters, heartbeat, the cancel flag read back).
PROGRESS_INTERVAL = 0.25
#: Acknowledged records are committed to the snapshot (and the succeeded log) once this
#: many are waiting, or ``ACK_GROUP_SECONDS`` after the first of them, or at the end.
ACK_GROUP_ROWS = 10_000
ACK_GROUP_SECONDS = 1.0
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
class _Acked:
    """One settled batch's acknowledged part, waiting in a commit group."""

    payload: pa.RecordBatch
    keys: pa.Array
    hashes: pa.Array | None
    started: datetime
    completed: datetime


@dataclass
class _InFlight:
    """A batch handed to a pipelined writer and not settled yet."""

    batch: pa.RecordBatch
    action: str
    operation: str
    removal: bool
    started: datetime
    outcome: Future[WriteResult]


@dataclass
class Delivery:
    """What every batch of one run is delivered with."""

    reporter: RunReporter
    run_id: int
    writer: BatchWriter
    store: SnapshotStore | WarehouseDiff
    stop: threading.Event
    counts: dict[str, Any]
    succeeded: SucceededLog
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    after: AfterAck = field(default_factory=AfterAck)
    #: Acknowledged (keys, hashes or None for removals) awaiting the writer's close,
    #: for writers whose writes become durable only then.
    pending: list[tuple[pa.Array, pa.Array | None]] = field(default_factory=list)
    #: Batches submitted to a pipelined writer, oldest first.
    in_flight: deque[_InFlight] = field(default_factory=deque)
    #: The commit group being filled: acknowledged batches of one operation and kind.
    group: list[_Acked] = field(default_factory=list)
    group_key: tuple[str, bool] = ("", False)
    group_since: float = 0.0
    last_report: float = float("-inf")

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
    marks mirror deletes, which leave the snapshot instead of entering it. A pipelined
    writer gets the batch at once and it is settled later (``_settle``)."""
    if d.writer.pipeline_depth > 0:
        _submit(d, batch, action, operation=operation, removal=removal)
        return
    started = utcnow()
    rejected = _write_split(d.writer, payload_of(batch), action, offset=0)
    _acknowledged(d, batch, rejected, operation=operation, removal=removal, started=started)


def _submit(d: Delivery, batch: pa.RecordBatch, action: str, *, operation: str,
            removal: bool) -> None:
    started = utcnow()
    outcome = d.writer.submit(payload_of(batch), action)  # type: ignore[arg-type]
    d.in_flight.append(_InFlight(batch, action, operation, removal, started, outcome))
    # Settle what is done, and wait for the oldest only when the window is full.
    while d.in_flight and (len(d.in_flight) > d.writer.pipeline_depth
                           or d.in_flight[0].outcome.done()):
        _settle(d, d.in_flight.popleft())


def _settle(d: Delivery, item: _InFlight) -> None:
    """The oldest submitted batch's outcome; a failed one is retried whole through
    ``write`` (the same retries and halving as an unpipelined writer) while the
    batches behind it stay in flight, so nothing of it is acknowledged unless its
    retry succeeds. Its failure fails the run."""
    payload = payload_of(item.batch)
    try:
        rejected = list(item.outcome.result().rejected)
    except TransientError as exc:
        _honour(exc)
        rejected = _write_split(d.writer, payload, item.action, offset=0,
                                attempts=TRANSIENT_ATTEMPTS - 1)
    except BatchRejected as exc:
        rejected = _halve(d.writer, payload, item.action, 0, exc)
    _acknowledged(d, item.batch, rejected, operation=item.operation, removal=item.removal,
                  started=item.started)


def settle_all(d: Delivery) -> None:
    """Settle every batch still in flight (the end of a run that did not fail)."""
    while d.in_flight:
        _settle(d, d.in_flight.popleft())


def _abandon_in_flight(d: Delivery) -> None:
    """The run failed: wait for what is in flight (each request is bounded by its
    timeout and retries) so no request outlives the run, and acknowledge only the
    batches that succeeded whole. A failed batch is never retried nor acknowledged
    here, whatever the batches after it did."""
    while d.in_flight:
        item = d.in_flight.popleft()
        try:
            rejected = list(item.outcome.result().rejected)
        except Exception:  # noqa: BLE001 - its records stay out of the snapshot
            continue
        _acknowledged(d, item.batch, rejected, operation=item.operation,
                      removal=item.removal, started=item.started, report=False)


def _acknowledged(d: Delivery, batch: pa.RecordBatch, rejected: list[RejectedRecord], *,
                  operation: str, removal: bool, started: datetime,
                  report: bool = True) -> None:
    """A settled batch: its rejected records logged, the rest queued for the snapshot
    and the succeeded log, the counters moved on."""
    completed = utcnow()
    keys = batch.column(KEY)
    payload = payload_of(batch)
    accepted, accepted_keys = payload, keys
    hashes = None if removal else batch.column(HASH)
    if rejected:  # filtering copies the batch, so only when something must be left out
        mask = _accepted_mask(batch.num_rows, rejected)
        accepted, accepted_keys = payload.filter(mask), pc.filter(keys, mask)
        hashes = None if hashes is None else pc.filter(hashes, mask)
    _group(d, _Acked(accepted, accepted_keys, hashes, started, completed), operation, removal)
    _log_rejected(d.reporter, payload, keys, rejected, operation)
    d.stats.processed += batch.num_rows
    d.stats.rejected += len(rejected)
    d.stats.accepted += batch.num_rows - len(rejected)
    if report:
        check(d)


def _group(d: Delivery, acked: _Acked, operation: str, removal: bool) -> None:
    key = (operation, removal)
    if d.group and key != d.group_key:
        flush_group(d)
    if not d.group:
        d.group_key, d.group_since = key, time.monotonic()
    d.group.append(acked)
    # Writers of large batches (databases, brokers, pipelined or not): each is committed
    # as it is acknowledged, so a crash resends at most the batches in flight. Writers
    # that cut small batches into their own requests (HTTP) commit in groups.
    rows = sum(len(a.keys) for a in d.group)
    if (not d.writer.cuts_requests or rows >= ACK_GROUP_ROWS
            or time.monotonic() - d.group_since >= ACK_GROUP_SECONDS):
        flush_group(d)


def flush_group(d: Delivery) -> None:
    """Hand the commit group to the acknowledgement thread: one snapshot commit and one
    append to the succeeded log for all of its batches."""
    group, d.group = d.group, []
    if not group:
        return
    operation, removal = d.group_key
    keys = _concat([a.keys for a in group])
    hashes = None if removal else _concat([a.hashes for a in group if a.hashes is not None])

    def after_ack() -> None:
        if len(keys):
            d.acknowledge(keys, hashes)
        d.succeeded.write_parts([(a.payload, a.keys, a.started, a.completed) for a in group],
                                operation=operation)

    d.after.submit(after_ack)


def _concat(arrays: list[pa.Array]) -> pa.Array:
    chunks = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    return chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)


def finish_writer(d: Delivery, *, failed: bool) -> None:
    """End the writer. A writer that publishes only at close drops its unpublished
    output when the run failed; its records were never committed to the snapshot,
    so the next run sends them again. Otherwise what it acknowledged is committed
    once close has published it. Acknowledged batches are committed first, also when
    the run failed: they were delivered."""
    if not failed:
        try:
            settle_all(d)
        except BaseException:
            finish_writer(d, failed=True)
            raise
    _abandon_in_flight(d)
    flush_group(d)
    try:
        try:
            d.after.drain()
        finally:
            d.succeeded.close()  # its last part, also of a failed run: delivered records
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


def check(d: Delivery, *, force: bool = False) -> None:
    """Report progress (at most every ``PROGRESS_INTERVAL`` seconds, or when
    ``force``d); stop here (a batch boundary) when asked to."""
    now = time.monotonic()
    cancel = False
    if force or now - d.last_report >= PROGRESS_INTERVAL:
        d.last_report = now
        cancel = d.reporter.progress(**d.counts, **d.stats.as_counters())
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
    writer: BatchWriter, batch: pa.RecordBatch, action: str, *, offset: int,
    attempts: int = TRANSIENT_ATTEMPTS,
) -> list[RejectedRecord]:
    """Write; a batch rejected as a whole is halved until the bad records are alone."""
    try:
        result = _write_retrying(writer, batch, action, attempts)
    except BatchRejected as exc:
        return _halve(writer, batch, action, offset, exc)
    return [RejectedRecord(offset + r.index, r.reason) for r in result.rejected]


def _halve(writer: BatchWriter, batch: pa.RecordBatch, action: str, offset: int,
           exc: BatchRejected) -> list[RejectedRecord]:
    if batch.num_rows == 1:
        return [RejectedRecord(offset, str(exc))]
    half = batch.num_rows // 2
    return _write_split(writer, batch.slice(0, half), action, offset=offset) + _write_split(
        writer, batch.slice(half), action, offset=offset + half
    )


def _write_retrying(writer: BatchWriter, batch: pa.RecordBatch, action: str,
                    attempts: int = TRANSIENT_ATTEMPTS) -> Any:
    for attempt in Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=0.5, max=30),
        before_sleep=_honour_retry_after,
        reraise=True,
    ):
        with attempt:
            return writer.write(batch, action)  # type: ignore[arg-type]
    raise AssertionError("unreachable")


def _honour(exc: TransientError) -> None:
    """Before retrying a pipelined batch: the wait its failure asked for, else the
    first backoff step of ``_write_retrying``."""
    time.sleep(min(exc.retry_after, 300) if exc.retry_after else 0.5)


def _honour_retry_after(state: Any) -> None:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, TransientError) and exc.retry_after:
        time.sleep(min(exc.retry_after, 300))


def _log_rejected(
    reporter: RunReporter,
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
    reporter.log_records(records, status="rejected", operation=operation)
