"""Per-record results of a run that are not kept in the control-plane database.

Invalid and rejected records are few and go to ``sync_run_records``. Succeeded
records can be millions per run, so each acknowledged batch is written as one Parquet
part under ``REFLOW_HOME/runs/<run id>/succeeded/``: the payload columns as mapped,
plus the identifier, operation and batch times. The records API and the export read
these files with DuckDB.
"""

from __future__ import annotations

import datetime as dt
import os
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


def run_dir(home: Path, run_id: int) -> Path:
    return home / "runs" / str(run_id)


def succeeded_glob(home: Path, run_id: int) -> str:
    return str(run_dir(home, run_id) / "succeeded" / "part-*.parquet")


class SucceededLog:
    """Appends acknowledged records of one run, one Parquet part per commit group."""

    def __init__(
        self, home: Path, run_id: int, *, on_part: Callable[[Path], None] | None = None
    ) -> None:
        self.directory = run_dir(home, run_id) / "succeeded"
        self.parts = 0
        #: Called with each complete part (shares it when runs keep files in object storage).
        self.on_part = on_part

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
        """Several acknowledged batches (payload, keys, started, completed) as one part:
        each record keeps its own batch's times."""
        tables = [self._table(*part, operation=operation) for part in parts if len(part[1])]
        if not tables:
            return
        # Record payloads are customer data: owner-only directories and files.
        for directory in (self.directory.parents[1], self.directory.parent, self.directory):
            directory.mkdir(mode=0o700, exist_ok=True)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        self.parts += 1
        final = self.directory / f"part-{self.parts:06d}.parquet"
        # Written aside and renamed, so a reader never sees half a file.
        tmp = self.directory / f".part-{self.parts:06d}.tmp"
        # Dictionary encoding only where values repeat: on keys, e-mails and amounts it
        # tripled the cost of the log (and made the files larger).
        # Row groups of ``ROW_GROUP_ROWS``: the writer holds a whole row group encoded
        # before it writes it out.
        pq.write_table(table, tmp, use_dictionary=[OPERATION], row_group_size=ROW_GROUP_ROWS)
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
        if self.on_part is not None:
            self.on_part(final)

    @staticmethod
    def _table(payload: pa.RecordBatch, keys: pa.Array, started: dt.datetime,
               completed: dt.datetime, *, operation: str) -> pa.Table:
        n = payload.num_rows
        ts = pa.timestamp("us", tz="UTC")
        table = pa.Table.from_batches([payload]).append_column(IDENTIFIER, keys.cast(pa.string()))
        table = table.append_column(OPERATION, pa.repeat(pa.scalar(operation, pa.string()), n))
        table = table.append_column(STARTED, pa.repeat(pa.scalar(started, ts), n))
        return table.append_column(COMPLETED, pa.repeat(pa.scalar(completed, ts), n))
