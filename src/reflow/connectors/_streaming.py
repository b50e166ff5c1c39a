"""Streaming Arrow batches out of a database: read ahead on a thread, re-cut to the
batch size the run asked for."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import pyarrow as pa

T = TypeVar("T")


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """``items`` produced on a thread of their own, one ahead of the consumer: the next
    batch is read and parsed (I/O and Arrow's parser, both without the GIL) while the
    consumer writes the current one and waits on its destination. Exceptions reach
    the consumer; a consumer that stops early stops and closes the producer."""
    handoff: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="reflow-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            more, value = handoff.get()
            if more:
                yield value  # type: ignore[misc]
            elif value is None:
                return
            else:
                raise value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def rebatch(batches: Iterable[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly ``batch_size`` rows (the last one may be shorter) out of the
    parser's blocks (~15k rows each): every batch costs the writer a round of
    statements, so a batch is as large as the run asked for, not as a parse block."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows < batch_size:
            continue
        table = pa.Table.from_batches(pending).combine_chunks()
        whole = rows - rows % batch_size
        for offset in range(0, whole, batch_size):
            yield _one_batch(table.slice(offset, batch_size))
        pending = [_one_batch(table.slice(whole))] if whole < rows else []
        rows -= whole
    if rows:
        yield _one_batch(pa.Table.from_batches(pending).combine_chunks())


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.to_batches()
    return batches[0] if len(batches) == 1 else table.combine_chunks().to_batches()[0]
