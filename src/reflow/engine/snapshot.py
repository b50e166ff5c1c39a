"""The engine-side snapshot: what the last successful deliveries of a sync were
(sync key -> hash of the mapped values), kept in a DuckDB file per sync.

A run stages the mapped source rows in an in-memory database attached beside it
(``RUN_DB``: it spills to the spill directory past the memory limit, so memory stays
bounded whatever the model's size), and DuckDB computes the diff. The run's tables
never enter the snapshot file: nothing of them is logged or checkpointed, and the
file that is checked back into storage holds only the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

KEY, HASH = "__reflow_key", "__reflow_hash"
#: The in-memory database holding a run's work tables (stage, dupes, invalid, ...).
RUN_DB = "reflow_run"
_RUN_TABLES = ("stage", "dupes", "invalid", "changed", "removed")
#: Rows of consecutive same-schema batches inserted into the stage with one statement.
STAGE_ROWS = 250_000


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def refused_key(key: Any, key_field: str) -> tuple[str, str]:
    """The status and reason of a row the diff refuses for its key (an ``invalid`` row):
    a null key, or one that more than one row has."""
    if key is None:
        return "NULL", f"Matching ID {key_field} is null"
    return "DUPLICATE", f"Duplicate value {key!r} of {key_field}"


class SnapshotStore:
    #: The run streams the model through ``stage`` (the in-warehouse store reads it itself).
    needs_rows = True

    def __init__(
        self, path: Path, *, memory_limit: str = "128MB",
        on_close: Callable[[bool], None] | None = None,
    ) -> None:
        import duckdb

        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path))
        #: Checks the snapshot back into storage once the connection is closed; told
        #: whether this run wrote to it (an unchanged one is not uploaded again).
        self._on_close = on_close
        self.modified = False
        #: Set when the snapshot could not be read and this run starts from an empty one.
        self.notice: str | None = None
        spill = path.parent / "spill"
        spill.mkdir(exist_ok=True)
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute(f"SET temp_directory = '{spill}'")
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS snapshot (key VARCHAR PRIMARY KEY, hash VARCHAR NOT NULL)"
        )
        self.con.execute("CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v VARCHAR)")
        for table in _RUN_TABLES:  # left in the file by a run of an earlier version
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        # Unqualified names resolve to the run's tables first, then the snapshot's; new
        # tables are created in the run's database (the first entry).
        file_db = self.con.execute("SELECT current_database()").fetchall()[0][0]
        self.con.execute(f"ATTACH ':memory:' AS {RUN_DB}")
        self._search_path = f"SET search_path = '{RUN_DB}.main,{_q(file_db)}.main'"
        self.con.execute(self._search_path)
        self._staged = False
        #: Batches not inserted yet (see ``stage``) and the arguments they came with.
        self._pending: list[pa.Table] = []
        self._pending_args: tuple[str, frozenset[str]] = ("", frozenset())
        self._closed = False
        self._writer = self._cursor()
        self._readers: list[Any] = []

    def _cursor(self) -> Any:
        """Another connection to the same database (one open result per connection),
        resolving names as ``con`` does."""
        cursor = self.con.cursor()
        cursor.execute(self._search_path)
        return cursor

    # -- bookkeeping -------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        # fetchall, not fetchone: DuckDB refuses new work while a result is unfinished.
        rows = self.con.execute("SELECT v FROM meta WHERE k = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        if self.meta(key) != value:  # every run sets its mappings' fingerprint again
            self._writer.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])
            self.modified = True

    def reset(self) -> None:
        self._writer.execute("DELETE FROM snapshot")
        self.modified = True

    # -- staging -----------------------------------------------------------------------
    def stage(
        self, table: pa.Table, key_field: str, *, unhashed: frozenset[str] = frozenset()
    ) -> None:
        """Append mapped rows with their normalised key and the hash of the mapped values.

        Columns in ``unhashed`` (sync metadata such as the run id, which differs every
        run) travel with the row but do not count as a change.

        Consecutive batches of one schema are inserted together, ``STAGE_ROWS`` at a
        time: one INSERT per 50,000-row batch cost ~3x as much as one per 250,000 (each
        statement's fixed work and its partly filled row groups). A batch of another
        schema is never merged, so each row is hashed with its own batch's types."""
        if self._pending and (self._pending[0].schema != table.schema
                              or self._pending_args != (key_field, unhashed)):
            self._flush()
        self._pending.append(table)
        self._pending_args = (key_field, unhashed)
        if sum(t.num_rows for t in self._pending) >= STAGE_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        key_field, unhashed = self._pending_args
        self._pending = []
        hashed = [c for c in table.column_names if c not in unhashed] or [key_field]
        cols = ", ".join(f"{_q(c)} := {_q(c)}" for c in hashed)
        # DuckDB's 64-bit hash of the row (each type's own hash, combined per field), as
        # the in-warehouse diff hashes with PostgreSQL's: md5 of the row's JSON cost
        # ~8 s of a 1M-row run. A DuckDB release that hashed differently would make
        # every row look changed once (a full resend), never hide a change.
        select = (
            f"SELECT *, CAST({_q(key_field)} AS VARCHAR) AS {KEY},"
            f" CAST(hash(struct_pack({cols})) AS VARCHAR) AS {HASH} FROM staged_batch"
        )
        self.con.register("staged_batch", table)
        try:
            if self._staged:
                self.con.execute(f"INSERT INTO stage {select}")
            else:
                self.con.execute(f"CREATE OR REPLACE TABLE stage AS {select}")
                self._staged = True
        finally:
            self.con.unregister("staged_batch")

    def source_count(self) -> int:
        self._flush()
        return self._count("stage") if self._staged else 0

    def classify(self, *, full: bool) -> tuple[int, int]:
        """Split staged rows into invalid ones (null or duplicate key) and changed ones
        (new, or hash differs from the snapshot; every valid row when ``full``).
        Returns (invalid, changed) counts."""
        self._flush()
        if not self._staged:
            return 0, 0
        self.con.execute(
            f"CREATE OR REPLACE TABLE dupes AS SELECT {KEY} FROM stage"
            f" WHERE {KEY} IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
        )
        self.con.execute(
            f"CREATE OR REPLACE TABLE invalid AS SELECT * FROM stage WHERE {KEY} IS NULL"
            f" OR {KEY} IN (SELECT {KEY} FROM dupes)"
        )
        changed_filter = "TRUE" if full else f"p.hash IS DISTINCT FROM s.{HASH}"
        self.con.execute(
            f"CREATE OR REPLACE TABLE changed AS SELECT s.* FROM stage s"
            f" LEFT JOIN snapshot p ON p.key = s.{KEY}"
            f" WHERE s.{KEY} IS NOT NULL AND s.{KEY} NOT IN (SELECT {KEY} FROM dupes)"
            f" AND {changed_filter}"
        )
        return self._count("invalid"), self._count("changed")

    def removed_count(self, *, keep: pa.Array | None = None) -> int:
        """Snapshot keys no longer in the source (what a mirror sync deletes), except
        those in ``keep`` (string keys of rows still there but invalid this run)."""
        self._flush()
        if self._staged:
            self.con.execute(
                "CREATE OR REPLACE TABLE removed AS SELECT key AS "
                f"{KEY} FROM snapshot WHERE key NOT IN "
                f"(SELECT {KEY} FROM stage WHERE {KEY} IS NOT NULL)"
            )
        else:  # nothing staged: the model is empty, so everything delivered left it
            self.con.execute(
                f"CREATE OR REPLACE TABLE removed AS SELECT key AS {KEY} FROM snapshot"
            )
        if keep is not None and len(keep):
            self.con.register("kept_keys", pa.table({"key": keep}))
            try:
                self.con.execute(f"DELETE FROM removed WHERE {KEY} IN (SELECT key FROM kept_keys)")
            finally:
                self.con.unregister("kept_keys")
        return self._count("removed")

    def batches(self, table: str, batch_size: int) -> pa.RecordBatchReader:
        self._flush()
        # Each reader gets its own cursor: DuckDB allows one open result per connection,
        # and the snapshot is written while a reader streams.
        cursor = self._cursor()
        self._readers.append(cursor)
        # A relation streams; a DB-API result (``execute``) would first copy every row
        # of the table into memory (RSS grew with the model: 350 MB at 200k rows,
        # 600 MB at 1M).
        return cursor.sql(f"SELECT * FROM {table}").to_arrow_reader(batch_size)

    def _count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    # -- committing ----------------------------------------------------------------------
    def commit_delivered(self, keys: pa.Array, hashes: pa.Array) -> None:
        """Record rows the destination acknowledged."""
        delivered = pa.table({"key": keys, "hash": hashes})
        self.modified = True
        self._writer.register("delivered", delivered)
        try:
            self._writer.execute("INSERT OR REPLACE INTO snapshot SELECT key, hash FROM delivered")
        finally:
            self._writer.unregister("delivered")

    def commit_removed(self, keys: pa.Array) -> None:
        self.modified = True
        self._writer.register("gone", pa.table({"key": keys}))
        try:
            self._writer.execute("DELETE FROM snapshot WHERE key IN (SELECT key FROM gone)")
        finally:
            self._writer.unregister("gone")

    def close(self) -> None:
        """Close the file (DuckDB checkpoints it; the run's in-memory tables go with the
        connection) and check it back into storage. Idempotent: the run closes early to
        report a failed check-in."""
        if self._closed:
            return
        self._closed = True
        for cursor in self._readers:
            cursor.close()
        self._writer.close()
        self.con.close()
        if self._on_close is not None:
            self._on_close(self.modified)


def rows_of(table: pa.Table | pa.RecordBatch, limit: int | None = None) -> list[dict[str, Any]]:
    if limit is not None:
        table = table.slice(0, limit)
    return table.to_pylist()
