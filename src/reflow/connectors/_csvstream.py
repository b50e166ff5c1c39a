"""Turning a database's CSV export stream into Arrow record batches.

Databases export CSV far faster than a driver builds Python rows, and pyarrow parses
it in C++, so this is the fast path from ``COPY ... TO STDOUT`` to Arrow.
"""

from __future__ import annotations

import io
import itertools
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

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


class ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        # Fills the buffer with as many chunks as fit: a COPY stream yields one chunk
        # per row, and one call per row was most of this reader's cost. Chunks are
        # viewed, not copied: each is a bytes object of its own (psycopg's rows are).
        n, size = 0, len(buffer)
        while n < size:
            if not self._pending:
                try:
                    self._pending = memoryview(next(self._chunks))
                except StopIteration:
                    break
            k = min(size - n, len(self._pending))
            buffer[n:n + k] = self._pending[:k]
            self._pending = self._pending[k:]
            n += k
        return n


def read_csv_batches(
    chunks: Iterable[bytes],
    schema: pa.Schema,
    *,
    batch_size: int,
    true_values: tuple[str, ...] = ("t", "true", "1"),
    false_values: tuple[str, ...] = ("f", "false", "0"),
) -> Iterator[pa.RecordBatch]:
    """Parse headerless CSV (unquoted empty = NULL, ``""`` = empty string) into
    batches of at most ``batch_size`` rows with ``schema``.

    Timestamp-with-zone columns are parsed as text and converted here, because
    databases print offsets (``+00``) that Arrow's CSV parser does not take.
    """
    if not schema.names:
        return
    chunks = iter(chunks)
    first = next((bytes(c) for c in chunks if len(c)), None)
    if first is None:
        return  # no rows; Arrow refuses an empty CSV
    chunks = itertools.chain([first], chunks)
    parse_types = {
        f.name: (pa.string() if pa.types.is_timestamp(f.type) and f.type.tz else f.type)
        for f in schema
    }
    # Small blocks, parsed on this thread: the consumer is slower than the parser
    # anyway, and larger or threaded read-ahead only adds resident memory (measured in
    # bench/: 8 MB threaded blocks cost ~60 MB more peak RSS for the same speed).
    reader = pacsv.open_csv(
        io.BufferedReader(ChunkReader(chunks), buffer_size=1 << 20),
        read_options=pacsv.ReadOptions(
            column_names=schema.names, block_size=2 << 20, use_threads=False
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=parse_types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=list(true_values),
            false_values=list(false_values),
        ),
    )
    yield from rebatch((_fix_zoned_timestamps(b, schema) for b in reader), batch_size)


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


def _fix_zoned_timestamps(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for i, f in enumerate(schema):
        col = batch.column(i)
        if pa.types.is_timestamp(f.type) and f.type.tz and pa.types.is_string(col.type):
            col = _zoned(col, f.type)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _zoned(text: pa.Array, target: pa.DataType) -> pa.Array:
    """Zoned timestamps as text -> ``target``. Sessions print them in UTC ("+00"), and
    cutting the suffix and reading the rest as UTC is ~7x cheaper than rewriting the
    offset with a regex, which remains for any other offset."""
    if pc.all(pc.ends_with(text, "+00")).as_py() is not False:
        naive = pc.cast(pc.utf8_slice_codeunits(text, 0, -3), pa.timestamp(target.unit))
        return pc.cast(naive, target)
    # "2024-01-02 03:04:05.123+02" -> ISO 8601 with a full offset
    return pc.cast(pc.replace_substring_regex(text, r"([+-]\d\d)$", r"\1:00"), target)
