"""The engine-side snapshot: what the last successful deliveries of a sync were
(sync key -> hash of the mapped values), kept in a DuckDB file per sync.

A run stages the mapped source rows in an in-memory database attached beside it
(``RUN_DB``: it spills to the spill directory past the memory limit, so memory stays
bounded whatever the model's size), and DuckDB computes the diff. The run's tables
never enter the snapshot file: nothing of them is logged or checkpointed, and the
file that is checked back into storage holds only the snapshot.

The snapshot table has no index: the diff hash-joins all of it anyway, and an index
must fit in DuckDB's memory (with a primary key on 1M keys, a buffer pool below 128 MB
failed the inserts). Acknowledged keys are appended to ``log``
(committed per batch, so a crash keeps them) and folded into ``snapshot`` when the
store closes, or when the next run opens a log a crashed run left behind. Within one
run no key is logged twice: ``changed`` holds each valid key once, and removed keys are
snapshot keys the model no longer has.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

log = logging.getLogger(__name__)

KEY, HASH = "__reflow_key", "__reflow_hash"
#: The in-memory database holding a run's work tables (stage, dupes, invalid, ...).
RUN_DB = "reflow_run"
_RUN_TABLES = ("stage", "dupes", "invalid", "changed", "removed")
#: Rows of consecutive same-schema batches inserted into the stage with one statement:
#: one DuckDB row group (122,880 rows). An insert of part of one leaves it partly
#: filled; on 1M rows, inserts of ~75,000 rows staged in 1.35 s, of 61,440 in 1.36 s,
#: of 122,880 in 1.0 s. At most ``STAGE_BYTES`` of them (wide rows: 122,880 of 40 text
#: columns are 300 MB held in Arrow, more than DuckDB's memory limit to insert at once).
STAGE_ROWS = 122_880
STAGE_BYTES = 16 * 2**20
#: Bytes of a batch read out of the store (see ``batches``), 1.5 MB (~17,000 rows of 10
#: columns): each batch is held at once by DuckDB's Arrow conversion (about five times
#: its size), the writer (two batches in flight for a pipelined one) and the
#: acknowledgement thread, so it is kept small. PostgreSQL merges of this size cost no
#: more in all than 50,000-row ones once two are in flight.
BATCH_BYTES = 3 * 2**19
#: DuckDB's buffer pool, in MB, while staging and diffing: the stage and the diff spill
#: to disk past it. Scanning and writing a table pins blocks of every column on each
#: thread, so the limit grows with the stage's width (measured: 1M rows of 12 columns
#: stage and diff in 32 MB on two threads); a statement that still runs out of memory
#: is retried with twice the limit, up to ``MAX_MEMORY_MB``. The store opens with
#: ``OPEN_MEMORY_MB`` and never has less (its bookkeeping statements are not retried:
#: at 4 MB one of them ran out).
OPEN_MEMORY_MB = 12
BASE_MEMORY_MB = 8
MEMORY_MB_PER_COLUMN = 2
MAX_MEMORY_MB = 2048
#: DuckDB while rows stream out to the destination (``batches``): one thread, and a
#: buffer pool of ``STREAM_MEMORY_MB`` plus ``STREAM_MEMORY_MB_PER_COLUMN`` per staged
#: column (16 MB at 10 columns), where staging and the diff had every core and the
#: limit above. A stream pins one block of each column per thread; the staged rows it
#: is not reading wait on disk rather than in the worker's memory while the destination
#: takes its time. Delivery waits on the destination, not on DuckDB. Measured on a
#: 1M-row first sync: the peak while delivering fell from 246 to ~230 MB (no higher
#: than staging's), with no measurable change in time.
STREAM_THREADS = 1
STREAM_MEMORY_MB = 4
STREAM_MEMORY_MB_PER_COLUMN = 1


_CREATE_LOG = "CREATE TABLE IF NOT EXISTS log (key VARCHAR, hash UBIGINT)"


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
        self, path: Path, *, on_close: Callable[[bool], None] | None = None,
    ) -> None:
        import duckdb

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = duckdb.connect(str(path))
        #: Checks the snapshot back into storage once the connection is closed; told
        #: whether this run wrote to it (an unchanged one is not uploaded again).
        self._on_close = on_close
        #: Set when the snapshot could not be read and this run starts from an empty one.
        self.notice: str | None = None
        spill = path.parent / "spill"
        spill.mkdir(exist_ok=True)
        self.memory_mb = 0
        #: The limit staging and the diff reached (restored to fold the log at close).
        self._diff_memory_mb = 0
        #: Columns of the widest staged batch, with the key and the hash.
        self._staged_columns = 0
        self._allow_memory(OPEN_MEMORY_MB)
        self.con.execute(f"SET temp_directory = '{spill}'")
        self.con.execute("SET preserve_insertion_order = false")
        self._file_db = _q(self.con.execute("SELECT current_database()").fetchall()[0][0])
        #: Whether this run wrote to the file (see ``_on_close``); an upgraded file is
        #: checked back in even if the run changes nothing else.
        self.modified = _upgrade(self.con)
        self.con.execute("CREATE TABLE IF NOT EXISTS snapshot (key VARCHAR, hash UBIGINT)")
        #: Acknowledged since the last fold: (key, hash), or (key, NULL) for a removal.
        self.con.execute(_CREATE_LOG)
        self.con.execute("CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v VARCHAR)")
        for table in _RUN_TABLES:  # left in the file by a run of an earlier version
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        if self._log_rows():  # a crashed run's acknowledgements
            self._fold()
            self.modified = True
        # Unqualified names resolve to the run's tables first, then the snapshot's; new
        # tables are created in the run's database (the first entry).
        self.con.execute(f"ATTACH ':memory:' AS {RUN_DB}")
        self._search_path = f"SET search_path = '{RUN_DB}.main,{self._file_db}.main'"
        self.con.execute(self._search_path)
        self._staged = False
        #: Rows and Arrow bytes staged so far (the width of a row, for ``batches``).
        self._staged_rows = self._staged_bytes = 0
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

    def _allow_memory(self, mb: int, con: Any = None) -> None:
        if mb > self.memory_mb:
            self._set_memory(mb, con)

    def _set_memory(self, mb: int, con: Any = None) -> None:
        """DuckDB's limit (one setting for all of the store's connections), set through
        ``con`` when another thread may be using ``self.con``."""
        self.memory_mb = mb
        (con or self.con).execute(f"SET memory_limit = '{mb}MB'")

    def _stream(self) -> None:
        """DuckDB's settings for streaming rows out (see ``STREAM_THREADS``); once."""
        if self._diff_memory_mb:
            return
        self._diff_memory_mb = self.memory_mb
        self.con.execute(f"SET threads = {STREAM_THREADS}")
        wanted = STREAM_MEMORY_MB + STREAM_MEMORY_MB_PER_COLUMN * self._staged_columns
        # Never below what the store opens with: the log's inserts and checkpoints need
        # their blocks too.
        self._set_memory(min(self.memory_mb, max(OPEN_MEMORY_MB, wanted)))

    def _run(self, sql: str, con: Any = None) -> None:
        """Execute ``sql`` (one statement, atomic) on ``con`` (default ``self.con``),
        with twice the memory while it runs out of it."""
        import duckdb

        while True:
            try:
                (con or self.con).execute(sql)
                return
            except duckdb.OutOfMemoryException:
                if not self._more_memory("", con):
                    raise

    def _more_memory(self, doing: str, con: Any = None) -> bool:
        """Double DuckDB's limit after it ran out while ``doing``; False at the cap."""
        if self.memory_mb * 2 > MAX_MEMORY_MB:
            return False
        log.warning("engine-side diff of %s: DuckDB ran out of its %s MB%s; retrying with %s MB",
                    self.path.name, self.memory_mb, doing, self.memory_mb * 2)
        self._allow_memory(self.memory_mb * 2, con)
        return True

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
        self._writer.execute("DELETE FROM log")
        self.modified = True

    def _log_rows(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM log").fetchall()[0][0])

    def _fold(self) -> None:
        """Move the log into the snapshot: one transaction, so a crash in between leaves
        the log to fold again."""
        self.con.execute("BEGIN")
        if self._count("snapshot"):
            self.con.execute("DELETE FROM snapshot WHERE key IN (SELECT key FROM log)")
            self.con.execute(
                "INSERT INTO snapshot SELECT key, hash FROM log WHERE hash IS NOT NULL")
            self.con.execute("DELETE FROM log")
        else:  # a first sync: the log becomes the snapshot (copying 1M rows took 0.4 s)
            self.con.execute("DELETE FROM log WHERE hash IS NULL")
            self.con.execute("DROP TABLE snapshot")
            self.con.execute("ALTER TABLE log RENAME TO snapshot")
            # new tables go to the run's database unless named with the file's
            self.con.execute(_CREATE_LOG.replace(" log ", f" {self._file_db}.main.log "))
        self.con.execute("COMMIT")

    def delivered(self) -> dict[str, int | None]:
        """The snapshot as it stands, acknowledgements not folded yet included: key ->
        hash of every record Reflow delivered and has not removed (None: delivered by a
        release whose hashes cannot be compared)."""
        rows = self.con.execute(
            "SELECT key, hash FROM snapshot WHERE key NOT IN (SELECT key FROM log)"
            " UNION ALL SELECT key, hash FROM log WHERE hash IS NOT NULL"
        ).fetchall()
        return dict(rows)

    # -- staging -----------------------------------------------------------------------
    def stage(
        self, table: pa.Table, key_field: str, *, unhashed: frozenset[str] = frozenset()
    ) -> None:
        """Append mapped rows with their normalised key and the hash of the mapped values.

        Columns in ``unhashed`` (sync metadata such as the run id, which differs every
        run) travel with the row but do not count as a change.

        Consecutive batches of one schema are inserted together, ``STAGE_ROWS`` (one
        row group) at a time: each statement's fixed work and its partly filled row
        group cost more than the batches' size (see ``STAGE_ROWS``). A batch of another
        schema is never merged, so each row is hashed with its own batch's types."""
        if self._pending and (self._pending[0].schema != table.schema
                              or self._pending_args != (key_field, unhashed)):
            self._flush()
        self._pending.append(table)
        self._pending_args = (key_field, unhashed)
        if (sum(t.num_rows for t in self._pending) >= STAGE_ROWS
                or sum(t.get_total_buffer_size() for t in self._pending) >= STAGE_BYTES):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        key_field, unhashed = self._pending_args
        self._pending = []
        self._staged_rows += table.num_rows
        self._staged_columns = max(self._staged_columns, table.num_columns + 2)
        self._staged_bytes += table.get_total_buffer_size()
        hashed = [c for c in table.column_names if c not in unhashed] or [key_field]
        cols = ", ".join(f"{_q(c)} := {_q(c)}" for c in hashed)
        # DuckDB's 64-bit hash of the row (each type's own hash, combined per field), as
        # the in-warehouse diff hashes with PostgreSQL's: md5 of the row's JSON cost
        # ~8 s of a 1M-row run. A DuckDB release that hashed differently would make
        # every row look changed once (a full resend), never hide a change.
        select = (
            f"SELECT *, CAST({_q(key_field)} AS VARCHAR) AS {KEY},"
            f" hash(struct_pack({cols})) AS {HASH} FROM staged_batch"
        )
        self._allow_memory(BASE_MEMORY_MB + MEMORY_MB_PER_COLUMN * (table.num_columns + 2))
        self.con.register("staged_batch", table)
        try:
            if self._staged:
                self._run(f"INSERT INTO stage {select}")
            else:
                self._run(f"CREATE OR REPLACE TABLE stage AS {select}")
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
        self._run(
            f"CREATE OR REPLACE TABLE dupes AS SELECT {KEY} FROM stage"
            f" WHERE {KEY} IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
        )
        self._run(
            f"CREATE OR REPLACE TABLE invalid AS SELECT * FROM stage WHERE {KEY} IS NULL"
            f" OR {KEY} IN (SELECT {KEY} FROM dupes)"
        )
        # ``changed`` is a view over the stage, read once while delivering: copied into
        # a table of its own, a first sync's rows were written twice (0.45 s per 1M).
        valid = f"{KEY} IS NOT NULL AND {KEY} NOT IN (SELECT {KEY} FROM dupes)"
        if full:
            self._run(f"CREATE OR REPLACE VIEW changed AS SELECT * FROM stage WHERE {valid}")
        else:
            # The join sees only keys, hashes and row ids: joined whole, its hash table
            # could hold whole rows of a wide model.
            self._run(
                "CREATE OR REPLACE TABLE changed_rows AS SELECT s.rowid AS row"
                f" FROM stage s LEFT JOIN snapshot p ON p.key = s.{KEY}"
                f" WHERE s.{valid} AND p.hash IS DISTINCT FROM s.{HASH}"
            )
            self._run("CREATE OR REPLACE VIEW changed AS"
                      " SELECT * FROM stage WHERE rowid IN (SELECT row FROM changed_rows)")
        return self._count("invalid"), self._count("changed")

    def removed_count(self, *, keep: pa.Array | None = None) -> int:
        """Snapshot keys no longer in the source (what a mirror sync deletes), except
        those in ``keep`` (string keys of rows still there but invalid this run)."""
        self._flush()
        if self._staged:
            self._run(
                "CREATE OR REPLACE TABLE removed AS SELECT key AS "
                f"{KEY} FROM snapshot WHERE key NOT IN "
                f"(SELECT {KEY} FROM stage WHERE {KEY} IS NOT NULL)"
            )
        else:  # nothing staged: the model is empty, so everything delivered left it
            self._run(
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
        """The rows of ``table``, at most ``batch_size`` a batch and fewer for wide rows
        (about ``BATCH_BYTES`` a batch: 50,000 rows of 40 text columns are 120 MB)."""
        import duckdb

        self._flush()
        self._stream()
        if self._staged_rows:
            width = max(1, self._staged_bytes // self._staged_rows)
            batch_size = max(1, min(batch_size, BATCH_BYTES // width))
        while True:
            # Each reader gets its own cursor: DuckDB allows one open result per
            # connection, and the snapshot is written while a reader streams.
            cursor = self._cursor()
            self._readers.append(cursor)
            # A relation streams; a DB-API result (``execute``) would first copy every
            # row of the table into memory (RSS grew with the model: 350 MB at 200k
            # rows, 600 MB at 1M).
            # Its start and first batch pin a block of every column on each thread:
            # that is where a stream runs out of memory, before any of it was delivered.
            try:
                reader = cursor.sql(f"SELECT * FROM {table}").to_arrow_reader(batch_size)
                first = [reader.read_next_batch()]
            except StopIteration:
                first = []
            except (duckdb.OutOfMemoryException, OSError) as exc:  # OSError: through Arrow
                if "Out of Memory" not in str(exc) or not self._more_memory(f" reading {table}"):
                    raise
                continue
            return pa.RecordBatchReader.from_batches(reader.schema, itertools.chain(first, reader))

    def _count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    # -- committing ----------------------------------------------------------------------
    def commit_delivered(self, keys: pa.Array, hashes: pa.Array) -> None:
        """Record rows the destination acknowledged."""
        self._append_log(pa.table({"key": keys, "hash": hashes}))

    def commit_removed(self, keys: pa.Array) -> None:
        self._append_log(pa.table({"key": keys, "hash": pa.nulls(len(keys), pa.uint64())}))

    def _append_log(self, acknowledged: pa.Table) -> None:
        self.modified = True
        self._writer.register("acknowledged", acknowledged)
        try:
            # On the acknowledgement thread, while the run streams on another cursor.
            self._run("INSERT INTO log SELECT key, hash FROM acknowledged", self._writer)
        finally:
            self._writer.unregister("acknowledged")

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
        try:
            if self.modified:
                self._allow_memory(self._diff_memory_mb)  # back from streaming's limit
                self._fold()
        finally:
            self.con.close()
        if self._on_close is not None:
            self._on_close(self.modified)


def _upgrade(con: Any) -> bool:
    """A snapshot of an earlier version (``key VARCHAR PRIMARY KEY, hash VARCHAR``)
    becomes an unindexed ``(key, hash UBIGINT)`` one. Its hashes were DuckDB's own, as
    text, and keep their value; md5 hashes of older versions become NULL, which no row
    hash equals, so those rows are sent once more."""
    rows = con.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'main'"
        " AND table_name = 'snapshot' AND column_name = 'hash'"
        " AND table_catalog = current_database()"
    ).fetchall()
    if not rows or rows[0][0] != "VARCHAR":
        return False
    con.execute("BEGIN")
    con.execute("CREATE TABLE snapshot_upgraded AS"
                " SELECT key, TRY_CAST(hash AS UBIGINT) AS hash FROM snapshot")
    con.execute("DROP TABLE snapshot")
    con.execute("ALTER TABLE snapshot_upgraded RENAME TO snapshot")
    con.execute("COMMIT")
    return True


def rows_of(table: pa.Table | pa.RecordBatch, limit: int | None = None) -> list[dict[str, Any]]:
    if limit is not None:
        table = table.slice(0, limit)
    return table.to_pylist()
