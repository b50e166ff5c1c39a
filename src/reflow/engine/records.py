"""Per-record results of a run that are not kept in the control-plane database.

Invalid and rejected records are few and go to ``sync_run_records``. Succeeded
records can be millions per run, so acknowledged batches are appended to Parquet parts
under ``REFLOW_HOME/runs/<run id>/succeeded/``: the payload columns as mapped, plus the
identifier, operation and batch times. The records API and the export read these files
with DuckDB.

A part is completed (renamed into place, and shared when runs keep files in object
storage) once it holds ``PART_BYTES``, at the first append ``PART_SECONDS`` after it
was begun, and when the run ends. With the log in S3, a part per acknowledged batch
was ~60 PUTs for 1M rows, and the acknowledgement thread that also commits the
snapshot spent ~1.3 s of a 10 s first sync on them. The cost: a reader sees a running
run's records about ``PART_SECONDS`` late, and a worker killed mid-run loses the open
part's log lines (the records were delivered and are in the snapshot).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

IDENTIFIER = "__reflow_identifier"
OPERATION = "__reflow_operation"
STARTED = "__reflow_batch_started_at"
COMPLETED = "__reflow_batch_completed_at"
#: Rows of a row group of a succeeded-log part (see ``SucceededLog.write_parts``).
ROW_GROUP_ROWS = 10_000
#: A part is completed once it holds this many bytes or was begun this many seconds ago.
#: Under ``storage.PART_BYTES``: shared with one PUT, buffering no more than this.
PART_BYTES = 4 * 2**20
PART_SECONDS = 10.0


def run_dir(home: Path, run_id: int) -> Path:
    return home / "runs" / str(run_id)


def succeeded_glob(home: Path, run_id: int) -> str:
    return str(run_dir(home, run_id) / "succeeded" / "part-*.parquet")


class SucceededLog:
    """Appends acknowledged records of one run to Parquet parts; ``close`` completes the
    last one. Used from one thread at a time."""

    def __init__(
        self, home: Path, run_id: int, *, on_part: Callable[[Path], None] | None = None
    ) -> None:
        self.directory = run_dir(home, run_id) / "succeeded"
        self.parts = 0
        #: Called with each complete part (shares it when runs keep files in object storage).
        self.on_part = on_part
        self._writer: pq.ParquetWriter | None = None
        self._tmp = self.directory / ".part.tmp"  # the open part's file (see ``_begin``)
        self._begun = 0.0

    def write(
        self,
        payload: pa.RecordBatch,
        keys: pa.Array,
        *,
        operation: str,
        started: dt.datetime,
        completed: dt.datetime,
    ) -> None:
        self.write_parts([(payload, keys, started, completed)], operation=operation)

    def write_parts(
        self,
        parts: list[tuple[pa.RecordBatch, pa.Array, dt.datetime, dt.datetime]],
        *,
        operation: str,
    ) -> None:
        """Several acknowledged batches (payload, keys, started, completed): each record
        keeps its own batch's times."""
        tables = [self._table(*part, operation=operation) for part in parts if len(part[1])]
        if not tables:
            return
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        if self._writer is not None and not self._writer.schema.equals(table.schema):
            self.close()  # a mirror's deletions carry only the key: a part of their own
        writer = self._writer or self._begin(table.schema)
        # Row groups of ``ROW_GROUP_ROWS``: the writer holds a whole row group encoded
        # before it writes it out.
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        if (self._tmp.stat().st_size >= PART_BYTES
                or time.monotonic() - self._begun >= PART_SECONDS):
            self.close()

    def close(self) -> None:
        """Complete the part being written, if any."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.close()
        final = self.directory / f"part-{self.parts:06d}.parquet"
        os.replace(self._tmp, final)
        if self.on_part is not None:
            self.on_part(final)

    def _begin(self, schema: pa.Schema) -> pq.ParquetWriter:
        # Record payloads are customer data: owner-only directories and files.
        for directory in (self.directory.parents[1], self.directory.parent, self.directory):
            directory.mkdir(mode=0o700, exist_ok=True)
        self.parts += 1
        # Written aside and renamed, so a reader never sees half a file. Dictionary
        # encoding only where values repeat: on keys, e-mails and amounts it tripled
        # the cost of the log (and made the files larger). zstd at its fastest level:
        # 1M rows of ten columns took 14 MB where Snappy took 38 MB, for 0.05 s more
        # CPU; what a run uploads, and what the disk holds for the retention period.
        self._tmp = self.directory / f".part-{self.parts:06d}.tmp"
        self._writer = pq.ParquetWriter(self._tmp, schema, use_dictionary=[OPERATION],
                                        compression="zstd", compression_level=1)
        os.chmod(self._tmp, 0o600)
        self._begun = time.monotonic()
        return self._writer

    @staticmethod
    def _table(payload: pa.RecordBatch, keys: pa.Array, started: dt.datetime,
               completed: dt.datetime, *, operation: str) -> pa.Table:
        n = payload.num_rows
        ts = pa.timestamp("us", tz="UTC")
        table = pa.Table.from_batches([payload]).append_column(IDENTIFIER, keys.cast(pa.string()))
        table = table.append_column(OPERATION, pa.repeat(pa.scalar(operation, pa.string()), n))
        table = table.append_column(STARTED, pa.repeat(pa.scalar(started, ts), n))
        return table.append_column(COMPLETED, pa.repeat(pa.scalar(completed, ts), n))
