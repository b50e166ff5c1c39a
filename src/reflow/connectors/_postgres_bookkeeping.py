"""Reflow's bookkeeping inside a PostgreSQL source (the in-warehouse diff).

Per sync, schema ``reflow_bookkeeping`` holds ``r<installation>_sync_<id>_snapshot`` (key -> hash of
what was delivered) and, while a run is in flight, ``sync_<id>_diff`` (the rows that
must leave the warehouse: changed, invalid, removed) and ``sync_<id>_counts``. The
diff is one statement: the model is read once, hashed in SQL, and full-joined with
the snapshot; only the rows of the diff are ever streamed out.

The run tables are UNLOGGED (no WAL; a crash loses them, which is fine: a run that
crashed is redone from the snapshot) and live in the schema rather than ``pg_temp``,
because the rows are streamed on one connection while the snapshot is written on
another.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from reflow.connectors._postgres import PostgresConfig, connect, quote_ident, quote_qualified
from reflow.connectors.errors import InvalidQuery, TerminalError

SCHEMA = "reflow_bookkeeping"
KEY, HASH, CLASS = "__reflow_key", "__reflow_hash", "__reflow_class"


class PostgresBookkeeping:
    """What the engine's ``WarehouseDiff`` needs from the warehouse, in this dialect."""

    def __init__(self, config: PostgresConfig, sync_id: int, *, namespace: str = "") -> None:
        import psycopg

        if namespace and not (namespace.isascii() and namespace.isalnum() and len(namespace) <= 16):
            raise TerminalError(f"invalid bookkeeping namespace {namespace!r}")
        self.config = config
        self.sync_id = int(sync_id)
        # Several Reflow installations may share one warehouse; each has its own
        # namespace, so their syncs with the same id never share a snapshot.
        prefix = f"r{namespace.lower()}_" if namespace else ""
        self.snapshot = quote_qualified(SCHEMA, f"{prefix}sync_{self.sync_id}_snapshot")
        self.diff_table = quote_qualified(SCHEMA, f"{prefix}sync_{self.sync_id}_diff")
        self.counts_table = quote_qualified(SCHEMA, f"{prefix}sync_{self.sync_id}_counts")
        self.journal = quote_qualified(SCHEMA, f"{prefix}sync_{self.sync_id}_journal")
        self.meta_table = quote_qualified(SCHEMA, f"{prefix}sync_meta")
        self.conn = connect(config, autocommit=True)
        self._readers: list[Any] = []
        self._source_columns: list[str] = []
        #: The connection a full diff streams the model on (see ``_full_diff``).
        self._stream: Any = None
        self._full_selects: dict[str, str | None] = {}
        #: Acknowledged pairs go straight into the (empty) snapshot; None: not decided.
        self._direct: bool | None = None
        try:
            self._ensure_tables()
        except psycopg.errors.InsufficientPrivilege as exc:
            self.conn.close()
            raise TerminalError(f"cannot write to schema {SCHEMA}: {exc}".strip()) from exc

    def _ensure_tables(self) -> None:
        import psycopg

        # Concurrent first runs race on IF NOT EXISTS: the loser fails on the catalog
        # (pg_type unique violation, "already exists") once the winner committed, and
        # then the object exists. Each statement commits on its own (autocommit).
        exists = (
            psycopg.errors.UniqueViolation,
            psycopg.errors.DuplicateSchema,
            psycopg.errors.DuplicateTable,
            psycopg.errors.DuplicateObject,
        )
        for statement in (
            f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
            f"CREATE TABLE IF NOT EXISTS {self.meta_table}"
            " (sync_id bigint, k text, v text, PRIMARY KEY (sync_id, k))",
            f"CREATE TABLE IF NOT EXISTS {self.snapshot}"
            " (key text PRIMARY KEY, hash text NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.journal} (seq bigserial, key text, hash text)",
        ):
            with contextlib.suppress(*exists):
                self.conn.execute(statement)
        self._restore_primary_key()  # a crashed direct load
        self._apply_journal()  # what a crashed run acknowledged

    # -- meta ----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.conn.execute(
            f"SELECT v FROM {self.meta_table} WHERE sync_id = %s AND k = %s", (self.sync_id, key)
        ).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            f"INSERT INTO {self.meta_table} VALUES (%s, %s, %s)"
            " ON CONFLICT (sync_id, k) DO UPDATE SET v = EXCLUDED.v",
            (self.sync_id, key, value),
        )

    def reset(self) -> None:
        self.conn.execute(f"TRUNCATE {self.snapshot}, {self.journal}")

    # -- diff ----------------------------------------------------------------------------
    def query_columns(self, query: str) -> list[str]:
        import psycopg

        try:
            cur = self.conn.execute(f"SELECT * FROM ({_strip(query)}) AS q LIMIT 0")
        except psycopg.Error as exc:
            raise InvalidQuery(str(exc).strip()) from exc
        return [d.name for d in cur.description or []]

    def diff(
        self, query: str, *, key_column: str, hashed_columns: Sequence[str], full: bool
    ) -> dict[str, int]:
        """Classify the model's rows against the snapshot in one statement.

        A row is ``invalid`` (null or duplicated key), ``changed`` (new, hash differs,
        or every valid row when ``full``) or ``removed`` (a snapshot key the model no
        longer has). Returns the counts, with ``source`` = rows in the model."""
        import psycopg

        self._source_columns = self.query_columns(query)
        if full:
            return self._full_diff(query, key_column=key_column, hashed_columns=hashed_columns)
        cols = ", ".join(f"s.{quote_ident(c)}" for c in self._source_columns)
        src = _hashed_select(query, key_column, hashed_columns)
        changed = "TRUE" if full else f"p.hash IS DISTINCT FROM s.{HASH}"
        statement = f"""
            WITH src AS MATERIALIZED ({src}),
            dupes AS (SELECT {KEY} FROM src WHERE {KEY} IS NOT NULL
                      GROUP BY 1 HAVING count(*) > 1),
            counted AS (INSERT INTO {self.counts_table} SELECT count(*) FROM src)
            INSERT INTO {self.diff_table}
            SELECT {cols}, coalesce(s.{KEY}, p.key), s.{HASH},
                   CASE WHEN s.{KEY} IS NULL AND p.key IS NOT NULL THEN 'removed'
                        WHEN s.{KEY} IS NULL OR s.{KEY} IN (SELECT {KEY} FROM dupes)
                          THEN 'invalid'
                        ELSE 'changed' END
            FROM src s FULL JOIN {self.snapshot} p ON p.key = s.{KEY}
            WHERE s.{KEY} IS NULL OR s.{KEY} IN (SELECT {KEY} FROM dupes) OR {changed}
        """
        try:
            self._create_run_tables(query)
            self.conn.execute(statement)
            counts = self.conn.execute(
                f"SELECT {CLASS}, count(*) FROM {self.diff_table} GROUP BY 1"
            ).fetchall()
            source = self.conn.execute(f"SELECT n FROM {self.counts_table}").fetchone()[0]
        except psycopg.Error as exc:
            raise InvalidQuery(str(exc).strip()) from exc
        found = dict(counts)
        return {
            "source": int(source),
            "invalid": int(found.get("invalid", 0)),
            "changed": int(found.get("changed", 0)),
            "removed": int(found.get("removed", 0)),
        }

    def _full_diff(
        self, query: str, *, key_column: str, hashed_columns: Sequence[str]
    ) -> dict[str, int]:
        """A full sync sends every valid row, so the model is not copied into the diff
        table (on a first sync that write was a third of the run). Only its keys are
        grouped, to count rows and find null and duplicate keys; ``rows`` then streams
        the model itself, hashed on the way out. Both read one snapshot of the data:
        they run in one REPEATABLE READ transaction on the streaming connection, whose
        temporary tables hold the bad keys and the removed ones."""
        import psycopg

        key = f"(q.{quote_ident(key_column)})::text"
        statement = f"""
            WITH g AS MATERIALIZED (SELECT {key} AS k, count(*) AS n
                                    FROM ({_strip(query)}) AS q GROUP BY 1),
            gone AS (INSERT INTO _reflow_removed SELECT p.key FROM {self.snapshot} p
                     WHERE NOT EXISTS (SELECT 1 FROM g WHERE g.k = p.key)),
            bad AS (INSERT INTO _reflow_bad SELECT k, n FROM g WHERE k IS NULL OR n > 1)
            SELECT coalesce(sum(n), 0) FROM g
        """
        # Decided before the streaming transaction reads (and so locks) the snapshot.
        self._direct = self._start_direct()
        self._stream = conn = connect(self.config)
        self._readers.append(conn)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            conn.execute("CREATE TEMP TABLE _reflow_removed (key text) ON COMMIT DROP")
            conn.execute("CREATE TEMP TABLE _reflow_bad (k text, n bigint) ON COMMIT DROP")
            source = conn.execute(statement).fetchall()[0][0]
            invalid = conn.execute("SELECT coalesce(sum(n), 0) FROM _reflow_bad").fetchall()[0][0]
            removed = conn.execute("SELECT count(*) FROM _reflow_removed").fetchall()[0][0]
        except psycopg.Error as exc:
            raise InvalidQuery(str(exc).strip()) from exc
        bad = f"SELECT 1 FROM _reflow_bad b WHERE b.k = s.{KEY}"
        cols = ", ".join(f"s.{quote_ident(c)}" for c in [*self._source_columns, KEY, HASH])
        src = _hashed_select(query, key_column, hashed_columns)
        valid = f"s.{KEY} IS NOT NULL" + (f" AND NOT EXISTS ({bad})" if invalid else "")
        # A class with no rows is not read at all (that would be one more model scan).
        self._full_selects = {
            "changed": f"SELECT {cols} FROM ({src}) s WHERE {valid}",
            "invalid": f"SELECT {cols} FROM ({src}) s WHERE s.{KEY} IS NULL OR EXISTS ({bad})"
                       if invalid else None,
            "removed": f"SELECT key AS {KEY} FROM _reflow_removed" if removed else None,
        }
        return {"source": int(source), "invalid": int(invalid),
                "changed": int(source) - int(invalid), "removed": int(removed)}

    def _create_run_tables(self, query: str) -> None:
        # A crashed run may have left them behind.
        self._drop_run_tables()
        self.conn.execute(
            f"CREATE UNLOGGED TABLE {self.diff_table} AS SELECT q.*, NULL::text AS {KEY},"
            f" NULL::text AS {HASH}, NULL::text AS {CLASS} FROM ({_strip(query)}) AS q WITH NO DATA"
        )
        self.conn.execute(f"CREATE UNLOGGED TABLE {self.counts_table} (n bigint)")

    def _drop_run_tables(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {self.diff_table}, {self.counts_table}")

    def rows(self, kind: str, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The diff's rows of one class: source columns, then key and hash
        (``removed``: the key only). Streams on a connection of its own."""
        from reflow.connectors.sources.postgres import copy_batches

        if self._stream is not None:
            select = self._full_selects[kind]
            if select is not None:
                yield from copy_batches(self._stream, select, batch_size=batch_size)
            return
        if kind == "removed":
            select = f"SELECT {KEY} FROM {self.diff_table} WHERE {CLASS} = 'removed'"
        else:
            cols = ", ".join(quote_ident(c) for c in [*self._source_columns, KEY, HASH])
            select = f"SELECT {cols} FROM {self.diff_table} WHERE {CLASS} = '{kind}'"
        conn = connect(self.config, read_only=True)
        self._readers.append(conn)
        yield from copy_batches(conn, select, batch_size=batch_size)

    # -- committing ----------------------------------------------------------------------
    # Acknowledged keys are appended to a journal (a plain, durable COPY: cheap per
    # batch) and folded into the snapshot in one statement when the run ends, or when
    # the next run starts if this one crashed. A snapshot that was empty is rebuilt
    # with a sorted index build instead of a million index inserts.
    #
    # A run that starts from an empty snapshot (a first sync, a new target) skips the
    # journal: its keys are unique (null and duplicate keys are never sent, removals
    # cannot happen), so acknowledged pairs are copied straight into the snapshot with
    # its primary key dropped, and the key is rebuilt once at the end (or by the next
    # run, after a crash). That saves the journal's sort and second copy of every row.
    def commit(self, keys: pa.Array, hashes: pa.Array) -> None:
        """Record (key, hash) pairs the destination acknowledged."""
        if self._direct is None:
            self._direct = self._start_direct()
        self._copy(self.snapshot if self._direct else self.journal, keys, hashes)

    def remove(self, keys: pa.Array) -> None:
        self._copy(self.journal, keys, pa.nulls(len(keys), pa.string()))

    def _start_direct(self) -> bool:
        with self.conn.transaction():
            if self.conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM {self.snapshot})"
                f" OR EXISTS (SELECT 1 FROM {self.journal})"
            ).fetchone()[0]:
                return False
            self._drop_primary_key()
        return True

    def _drop_primary_key(self) -> None:
        constraint = self._primary_key()
        if constraint:
            self.conn.execute(
                f"ALTER TABLE {self.snapshot} DROP CONSTRAINT {quote_ident(constraint)}"
            )

    def _primary_key(self) -> str | None:
        row = self.conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (self.snapshot,),
        ).fetchone()
        return row[0] if row else None

    def _restore_primary_key(self) -> None:
        """After a direct load: the snapshot's key again (a crashed load's table too)."""
        import psycopg

        if self._primary_key():
            return
        try:
            self.conn.execute(f"ALTER TABLE {self.snapshot} ADD PRIMARY KEY (key)")
        except psycopg.errors.UniqueViolation:  # cannot happen by design; heal anyway
            with self.conn.transaction():
                self.conn.execute(
                    f"DELETE FROM {self.snapshot} a USING {self.snapshot} b"
                    " WHERE a.key = b.key AND a.ctid < b.ctid"
                )
                self.conn.execute(f"ALTER TABLE {self.snapshot} ADD PRIMARY KEY (key)")

    def _copy(self, target: str, keys: pa.Array, hashes: pa.Array) -> None:
        if len(keys) == 0:
            return
        out = io.BytesIO()
        table = pa.table({"key": keys, "hash": hashes})
        pacsv.write_csv(
            table.cast(pa.schema([("key", pa.string()), ("hash", pa.string())])),
            out,
            write_options=pacsv.WriteOptions(include_header=False),
        )
        sql = f"COPY {target} (key, hash) FROM STDIN (FORMAT csv)"
        with self.conn.cursor().copy(sql) as copy:
            copy.write(out.getvalue())

    def _apply_journal(self) -> None:
        latest = (
            f"SELECT DISTINCT ON (key) key, hash FROM {self.journal} ORDER BY key, seq DESC"
        )
        if not self.conn.execute(f"SELECT EXISTS (SELECT 1 FROM {self.journal})").fetchone()[0]:
            return
        with self.conn.transaction():
            empty = not self.conn.execute(f"SELECT EXISTS (SELECT 1 FROM {self.snapshot})"
                                          ).fetchone()[0]
            if empty:
                self._drop_primary_key()
                self.conn.execute(
                    f"INSERT INTO {self.snapshot} SELECT key, hash FROM ({latest}) j"
                    " WHERE hash IS NOT NULL"
                )
                self.conn.execute(f"ALTER TABLE {self.snapshot} ADD PRIMARY KEY (key)")
            else:
                self.conn.execute(
                    f"DELETE FROM {self.snapshot} p USING {self.journal} j"
                    " WHERE j.hash IS NULL AND p.key = j.key"
                )
                self.conn.execute(
                    f"INSERT INTO {self.snapshot} SELECT key, hash FROM ({latest}) j"
                    " WHERE hash IS NOT NULL ON CONFLICT (key) DO UPDATE SET hash = EXCLUDED.hash"
                )
            self.conn.execute(f"TRUNCATE {self.journal}")

    def close(self) -> None:
        for conn in self._readers:
            conn.close()
        try:
            self._restore_primary_key()
            self._apply_journal()
            self._drop_run_tables()
        finally:
            self.conn.close()


def _hashed_select(query: str, key_column: str, hashed_columns: Sequence[str]) -> str:
    """The model's rows with their key as text and the hash of the mapped columns.
    ROW(...)::text renders every type in its canonical text form: cheap and exact."""
    hashed = ", ".join(f"q.{quote_ident(c)}" for c in hashed_columns)
    return (
        f"SELECT q.*, (q.{quote_ident(key_column)})::text AS {KEY},"
        f" md5(ROW({hashed})::text) AS {HASH} FROM ({_strip(query)}) AS q"
    )


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";")
