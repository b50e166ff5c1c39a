"""Reflow's bookkeeping inside a PostgreSQL source (the in-warehouse diff).

Per sync, schema ``reflow_bookkeeping`` holds ``r<installation>_sync_<id>_snapshot``
(key -> hash of what was delivered, the key in the model's own type) and its
``_journal`` (pairs acknowledged by a run, folded into the snapshot at the run's end,
or when the next run starts if it crashed).

A run reads the model inside one REPEATABLE READ transaction on a connection of its
own, so every statement of the run sees the same data:

* the diff is one statement: the model's rows are hashed, grouped by key (row count
  per key; a grand total by ``GROUPING SETS``) and full-joined with the snapshot. Only
  what the run acts on is kept, in a temporary table: keys of changed rows with
  their hash, null and duplicated keys, removed keys, and the total. A full sync
  keeps no changed keys: it sends every valid row;
* the rows to send are then streamed out by joining the model to those keys (or, in a
  full sync, the model itself, hashed on the way out), so an unchanged model is read
  once, by the diff, and nothing else leaves the warehouse.

Hashes are ``hash_record_extended`` of the mapped columns (PostgreSQL 14 and later;
64 bits, from each type's own hash function: several times cheaper than hashing the
rows' text with md5, which remains for older servers and for types without a hash
function, whose text is hashed). Keys keep their type: grouping and joining on an
``int8`` is ~3x cheaper than on its text. The snapshot has no index: the diff is a
hash join over all of it anyway, and a run that starts from an empty snapshot (a
first sync) copies acknowledged pairs straight into it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from reflow.connectors._postgres import (
    PostgresConfig,
    adbc_connect,
    connect,
    quote_ident,
    quote_qualified,
)
from reflow.connectors.errors import InvalidQuery, TerminalError

SCHEMA = "reflow_bookkeeping"
KEY, HASH = "__reflow_key", "__reflow_hash"
#: Working memory of the diff's hash aggregate and join (per statement, this session
#: only): with the default 4 MB a 1M-row diff spills to disk and takes ~1.4x as long.
WORK_MEM = "64MB"

# Built-in types whose default hash opclass has an extended (64-bit) hash function.
# Columns of any other type are hashed by their text.
_HASHABLE = frozenset({
    16, 17, 18, 19, 20, 21, 23, 25, 26, 650, 829, 869, 1042, 1043, 1082, 1083, 1114,
    1184, 1186, 1266, 1700, 2950, 3802,
})


def table_names(sync_id: int, namespace: str = "") -> tuple[str, str, str]:
    """(snapshot, journal, meta) of one sync, qualified and quoted."""
    if namespace and not (namespace.isascii() and namespace.isalnum() and len(namespace) <= 16):
        raise TerminalError(f"invalid bookkeeping namespace {namespace!r}")
    # Several Reflow installations may share one warehouse; each has its own
    # namespace, so their syncs with the same id never share a snapshot.
    prefix = f"r{namespace.lower()}_" if namespace else ""
    return (
        quote_qualified(SCHEMA, f"{prefix}sync_{int(sync_id)}_snapshot"),
        quote_qualified(SCHEMA, f"{prefix}sync_{int(sync_id)}_journal"),
        quote_qualified(SCHEMA, f"{prefix}sync_meta"),
    )


def drop(config: PostgresConfig, sync_id: int, *, namespace: str = "") -> None:
    """Remove a deleted sync's bookkeeping: its snapshot and journal tables and its
    meta rows. Creates nothing (a sync that never ran in-warehouse has none)."""
    snapshot, journal, meta = table_names(sync_id, namespace)
    conn = connect(config, autocommit=True)
    try:
        # A run of the sync may still hold its snapshot (its model read joins it, in a
        # transaction that lasts the run). Waiting in the lock queue would stop that
        # run's own next write to the table behind us, and it cannot finish the read
        # that would let us in: a deadlock PostgreSQL cannot see. So give up quickly;
        # the caller tries again later.
        conn.execute("SET lock_timeout = '1s'")
        conn.execute(f"DROP TABLE IF EXISTS {snapshot}, {journal}")
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (meta,)).fetchone()
        if exists and exists[0]:
            conn.execute(f"DELETE FROM {meta} WHERE sync_id = %s", (int(sync_id),))
    finally:
        conn.close()


class PostgresBookkeeping:
    """What the engine's ``WarehouseDiff`` needs from the warehouse, in this dialect."""

    def __init__(self, config: PostgresConfig, sync_id: int, *, namespace: str = "") -> None:
        import psycopg

        self.config = config
        self.sync_id = int(sync_id)
        self.snapshot, self.journal, self.meta_table = table_names(sync_id, namespace)
        self.conn = connect(config, autocommit=True)
        #: The connection the run reads the model on, in one REPEATABLE READ transaction.
        self._stream: Any = None
        #: (query, its columns with their type OIDs): the model is described once a run.
        self._described: tuple[str, list[tuple[str, int]]] | None = None
        self._selects: dict[str, str | None] = {}
        self._oids: list[tuple[str, int]] = []
        #: Acknowledged pairs go straight into the snapshot (it was empty).
        self._direct = False
        try:
            self.modern = self.conn.info.server_version >= 140000
            self._create(
                f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
                f"CREATE TABLE IF NOT EXISTS {self.meta_table}"
                " (sync_id bigint, k text, v text, PRIMARY KEY (sync_id, k))",
            )
            self._apply_journal()  # what a crashed run acknowledged
        except psycopg.errors.InsufficientPrivilege as exc:
            self.conn.close()
            raise TerminalError(f"cannot write to schema {SCHEMA}: {exc}".strip()) from exc
        except BaseException:
            self.conn.close()
            raise

    def _create(self, *statements: str) -> None:
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
        for statement in statements:
            with contextlib.suppress(*exists):
                self.conn.execute(statement)

    def ensure_snapshot(self, key_type: str) -> None:
        """The snapshot and journal, keyed by ``key_type``. Tables of another key type
        (the model's key column changed type, or an earlier Reflow kept text keys and
        md5 hashes) are dropped: every row is then new, and sent again."""
        found = self.conn.execute(
            "SELECT format_type(a.atttypid, NULL), format_type(h.atttypid, NULL)"
            " FROM pg_attribute a JOIN pg_attribute h ON h.attrelid = a.attrelid"
            " WHERE a.attrelid = to_regclass(%s) AND a.attname = 'key' AND h.attname = 'hash'",
            (self.snapshot,),
        ).fetchall()
        if found and found[0] != (key_type, "bigint"):
            self.conn.execute(f"DROP TABLE IF EXISTS {self.snapshot}, {self.journal}")
        self._create(
            f"CREATE TABLE IF NOT EXISTS {self.snapshot} (key {key_type}, hash bigint NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.journal}"
            f" (seq bigserial, key {key_type}, hash bigint)",
        )

    def _exists(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
            (self.snapshot, self.journal),
        )
        return bool(row.fetchone()[0])

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
        if self._exists():
            self.conn.execute(f"TRUNCATE {self.snapshot}, {self.journal}")

    # -- diff ----------------------------------------------------------------------------
    def query_columns(self, query: str) -> list[str]:
        return [name for name, _ in self._describe(query)]

    def _describe(self, query: str) -> list[tuple[str, int]]:
        import psycopg

        if self._described is None or self._described[0] != query:
            try:
                cur = self.conn.execute(f"SELECT * FROM ({_strip(query)}) AS q LIMIT 0")
            except psycopg.Error as exc:
                raise InvalidQuery(str(exc).strip()) from exc
            self._described = (query, [(d.name, d.type_code) for d in cur.description or []])
        return self._described[1]

    def diff(
        self, query: str, *, key_column: str, hashed_columns: Sequence[str], full: bool
    ) -> dict[str, int]:
        """Classify the model's rows against the snapshot in one statement.

        A row is ``invalid`` (null or duplicated key), ``changed`` (new, hash differs,
        or every valid row when ``full``) or ``removed`` (a snapshot key the model no
        longer has). Returns the counts, with ``source`` = rows in the model."""
        import adbc_driver_manager as adbc

        described = self._describe(query)
        oids = dict(described)
        key_type = self.conn.execute(
            "SELECT format_type(%s, NULL)", (oids[key_column],)
        ).fetchone()[0]
        # Without a length these name one-character/one-bit types; keep any length.
        self.ensure_snapshot({"character": "bpchar", "bit": "varbit"}.get(key_type, key_type))
        self._direct = not self.conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {self.snapshot})"
        ).fetchone()[0]

        key = f"q.{quote_ident(key_column)}"
        hashed = self._hash([(c, oids[c]) for c in hashed_columns])
        model = f"({_strip(query)}) AS q"
        # A full sync needs no hashes here: it sends every valid row, hashed as it goes.
        group_hash = "NULL::bigint" if full else f"min({hashed})"
        grouped = (
            f"SELECT {key} AS k, count(*) AS n, {group_hash} AS h, GROUPING({key}) AS t"
            f" FROM {model} GROUP BY GROUPING SETS (({key}), ())"
        )
        # t: the total, r: removed, n: null keys, d: a duplicated key, c: changed
        keep = "g.t = 1 OR g.k IS NULL OR g.n > 1"
        if not full:
            keep += " OR p.hash IS DISTINCT FROM g.h"
        statement = f"""
            CREATE TEMP TABLE _reflow_diff ON COMMIT DROP AS
            SELECT coalesce(g.k, p.key) AS k, g.h AS h, coalesce(g.n, 0) AS n,
                   CASE WHEN g.t = 1 THEN 't' WHEN g.n IS NULL THEN 'r'
                        WHEN g.k IS NULL THEN 'n' WHEN g.n > 1 THEN 'd' ELSE 'c' END AS c
            FROM ({grouped}) g FULL JOIN {self.snapshot} p ON p.key = g.k
            WHERE {keep}
        """
        self._stream = conn = adbc_connect(self.config)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ"
                )
                conn.commit()  # the run's transaction starts now, repeatable read
                cur.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
                cur.execute(statement)
                cur.execute("SELECT c, count(*), sum(n) FROM _reflow_diff GROUP BY 1")
                found = {c: (int(rows), int(n)) for c, rows, n in cur.fetchall()}
        except adbc.Error as exc:
            raise InvalidQuery(str(exc).strip()) from exc
        source = found.get("t", (0, 0))[1]
        invalid = found.get("n", (0, 0))[1] + found.get("d", (0, 0))[1]
        removed = found.get("r", (0, 0))[0]
        changed = source - invalid if full else found.get("c", (0, 0))[0]

        cols = ", ".join(f"q.{quote_ident(c)}" for c, _ in described)
        duplicated = (
            f"EXISTS (SELECT 1 FROM _reflow_diff d WHERE d.c = 'd' AND d.k = {key})"
            if "d" in found else "FALSE"
        )
        hashed_out = f"{cols}, ({key})::text AS {KEY}, {hashed} AS {HASH}"
        if full:
            send = f"SELECT {hashed_out} FROM {model} WHERE {key} IS NOT NULL AND NOT {duplicated}"
        else:
            send = (
                f"SELECT {cols}, ({key})::text AS {KEY}, d.h AS {HASH} FROM {model}"
                f" JOIN _reflow_diff d ON d.c = 'c' AND d.k = {key}"
            )
        # A class with no rows is not read at all (that would be one more model scan).
        self._oids = [*described, (KEY, 25), (HASH, 20)]
        self._selects = {
            "changed": send if changed else None,
            "invalid": f"SELECT {hashed_out} FROM {model} WHERE {key} IS NULL OR {duplicated}"
                       if invalid else None,
            "removed": f"SELECT k::text AS {KEY} FROM _reflow_diff WHERE c = 'r'"
                       if removed else None,
        }
        return {"source": source, "invalid": invalid, "changed": changed, "removed": removed}

    def _hash(self, columns: Sequence[tuple[str, int]]) -> str:
        """A 64-bit hash of the mapped columns, as ``bigint``."""
        if not self.modern:
            row = ", ".join(f"q.{quote_ident(c)}" for c, _ in columns)
            return f"('x' || left(md5(ROW({row})::text), 16))::bit(64)::bigint"
        row = ", ".join(
            f"q.{quote_ident(c)}" if oid in _HASHABLE else f"q.{quote_ident(c)}::text"
            for c, oid in columns
        )
        return f"hash_record_extended(ROW({row}), 0)"

    def rows(self, kind: str, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The diff's rows of one class: source columns, then key and hash
        (``removed``: the key only), read in the run's transaction."""
        from reflow.connectors.sources.postgres import arrow_batches, arrow_select

        select = self._selects.get(kind)
        if select is None:
            return
        columns = [(KEY, 25)] if kind == "removed" else self._oids
        select, schema = arrow_select(columns, select)
        yield from arrow_batches(self._stream, select, schema, batch_size=batch_size)

    # -- committing ----------------------------------------------------------------------
    # Acknowledged pairs are appended to the journal (a plain COPY: cheap per batch)
    # and folded into the snapshot in two statements when the run ends, or when the
    # next run starts if this one crashed. A run that starts from an empty snapshot
    # (a first sync, a new target) copies them straight into the snapshot instead: its
    # keys are unique (null and duplicate keys are never sent, nothing can be removed).
    def commit(self, keys: pa.Array, hashes: pa.Array) -> None:
        """Record (key, hash) pairs the destination acknowledged."""
        self._copy(self.snapshot if self._direct else self.journal, keys, hashes)

    def remove(self, keys: pa.Array) -> None:
        self._copy(self.journal, keys, pa.nulls(len(keys), pa.int64()))

    def _copy(self, target: str, keys: pa.Array, hashes: pa.Array) -> None:
        if len(keys) == 0:
            return
        out = io.BytesIO()
        table = pa.table({"key": keys.cast(pa.string()), "hash": hashes.cast(pa.int64())})
        pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(include_header=False))
        sql = f"COPY {target} (key, hash) FROM STDIN (FORMAT csv)"
        with self.conn.cursor().copy(sql) as copy:
            copy.write(out.getvalue())

    def _apply_journal(self) -> None:
        if not self._exists():
            return
        if not self.conn.execute(f"SELECT EXISTS (SELECT 1 FROM {self.journal})").fetchone()[0]:
            return
        with self.conn.transaction():
            self.conn.execute(
                f"DELETE FROM {self.snapshot} p USING {self.journal} j WHERE p.key = j.key"
            )
            self.conn.execute(
                f"INSERT INTO {self.snapshot} SELECT key, hash FROM"
                f" (SELECT DISTINCT ON (key) key, hash FROM {self.journal}"
                "  ORDER BY key, seq DESC) j WHERE hash IS NOT NULL"
            )
            self.conn.execute(f"TRUNCATE {self.journal}")

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()  # ends the run's transaction and its temporary table
            self._apply_journal()
        finally:
            self.conn.close()


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";")
