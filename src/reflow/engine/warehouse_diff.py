"""In-warehouse change detection, and choosing it over the engine-side store.

When the source hosts Reflow's bookkeeping (``reflow_bookkeeping`` in Postgres), the
previous snapshot (key -> hash) lives there, one table per sync, and the warehouse
computes the diff with one SQL statement: it hashes the mapped columns itself,
full-joins the model with the snapshot, and only the rows that must be sent (changed,
invalid, removed) ever leave it. Mapping, validation and delivery then run on those
rows exactly as on the engine-side path, and acknowledged keys are committed into the
warehouse snapshot after each batch, so both strategies give the same counters and
the same destination state.

When each strategy is used (:func:`use_in_warehouse`, asked by the planner, whose
``RunPlan.diff`` says which one a run takes):

* in-warehouse when the source's capabilities say ``supports_bookkeeping``, the
  connector offers ``open_bookkeeping``, the source was created with
  ``sync_engine = "advanced"`` (the default for such sources) and is not marked
  ``read_only_connection``, and every mapping is a ``column`` or a
  ``constant_value`` (``segment_membership`` is resolved into one), and the operation
  is not ``append`` (whose high-water mark lives next to the engine-side stage).
  Constants are not hashed in SQL: they are the same on every row and any change to
  them changes the mappings, which resends everything anyway.
* engine-side (:class:`~reflow.engine.snapshot.SnapshotStore`) otherwise: basic sync
  engine, read-only connections, sources without bookkeeping, and syncs with
  ``liquid_template`` or ``sync_metadata`` mappings, whose values are computed by the
  engine and so cannot be hashed in the warehouse. Also when the bookkeeping schema
  cannot be written (logged; the run goes on engine-side).

The two snapshots are separate. A sync that moves between strategies starts from a
new target on the other side (a full resend): choosing in-warehouse deletes the
engine-side file of the sync, so it can never serve a stale diff later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from reflow.connectors.errors import ConnectorError, TerminalError
from reflow.engine.mapping import coerce, map_batch
from reflow.engine.plan import RunPlan
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.storage import Storage, StorageError

log = logging.getLogger(__name__)

_WAREHOUSE_MAPPINGS = ("column", "constant_value")


class Bookkeeping(Protocol):
    """What a source connector's ``open_bookkeeping(sync_id)`` returns."""

    def meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def reset(self) -> None: ...
    def query_columns(self, query: str) -> list[str]: ...
    def diff(
        self, query: str, *, key_column: str, hashed_columns: list[str], full: bool
    ) -> dict[str, int]: ...
    def rows(self, kind: str, batch_size: int) -> Iterator[pa.RecordBatch]: ...
    def commit(self, keys: pa.Array, hashes: pa.Array) -> None: ...
    def remove(self, keys: pa.Array) -> None: ...
    def close(self) -> None: ...


def open_store(
    plan: RunPlan, *, mappings: list[dict[str, Any]],
    types: dict[str, tuple[str, pa.DataType]],
) -> SnapshotStore | WarehouseDiff:
    """The store for this run: in-warehouse when the plan says so and the source's
    bookkeeping opens, engine-side otherwise."""
    storage = plan.storage
    if plan.diff == "in_warehouse":
        try:
            store = WarehouseDiff(
                plan.source.open_bookkeeping(  # type: ignore[attr-defined]
                    plan.sync_id, namespace=plan.bookkeeping_namespace
                ),
                query=plan.query, mappings=mappings, key_field=plan.key_field, types=types,
            )
        except ConnectorError as exc:
            log.warning("sync %s: in-warehouse diff unavailable (%s); diffing engine-side",
                        plan.sync_id, exc)
        else:
            # a sync that moves strategies starts afresh
            storage.snapshots.delete(storage.snapshot_key)
            return store
    return open_engine_side(storage.snapshots, storage.snapshot_key, sync_id=plan.sync_id)


def snapshot_key(sync_id: int) -> str:
    return f"sync_{sync_id}.duckdb"


def open_engine_side(storage: Storage, key: str, *, sync_id: int) -> SnapshotStore:
    """Check the sync's snapshot out of storage; it is checked back in when the store
    closes (after every acknowledged batch was committed to it, whatever the outcome).

    An unreachable store fails the run before any record is sent. A snapshot that is
    unreadable is replaced by an empty one, and the run says so: it resends every record
    rather than silently sending nothing."""
    try:
        path = storage.checkout(key)
    except StorageError as exc:
        raise TerminalError(str(exc)) from exc
    notice = None
    if path is None:
        path = storage.working_path(key)
    else:
        try:
            return SnapshotStore(path, on_close=_checkin(storage, key, path))
        except Exception as exc:  # duckdb raises its own IOException/InternalException
            notice = (f"the engine-side snapshot of sync {sync_id} in {storage.url} could not "
                      f"be read ({type(exc).__name__}: {exc}); this run resent every record")
            log.warning(notice)
            path.unlink(missing_ok=True)
            Path(f"{path}.wal").unlink(missing_ok=True)
    store = SnapshotStore(path, on_close=_checkin(storage, key, path))
    store.notice = notice
    return store


def _checkin(storage: Storage, key: str, path: Path) -> Callable[[bool], None]:
    def checkin(changed: bool) -> None:
        if not changed:  # a no-change run: the stored snapshot is still the truth
            storage.release(key, path)
            return
        try:
            storage.checkin(key, path)
        except StorageError as exc:  # the snapshot was not saved: the run must say so
            raise TerminalError(str(exc)) from exc

    return checkin


def use_in_warehouse(
    source: Any, *, sync_engine: str, read_only: bool, mappings: list[dict[str, Any]],
    operation: str,
) -> bool:
    return bool(
        source.capabilities.supports_bookkeeping
        and callable(getattr(source, "open_bookkeeping", None))
        and sync_engine == "advanced"
        and not read_only
        # append keeps its high-water mark next to the engine-side stage
        and operation != "append"
        and all(m["from"]["type"] in _WAREHOUSE_MAPPINGS for m in mappings)
        and any(m["from"]["type"] == "column" for m in mappings if m["is_primary_identifier"])
    )


class WarehouseDiff:
    """The ``SnapshotStore`` interface over a warehouse's bookkeeping.

    ``stage`` is not used: the warehouse reads the model itself in ``classify``
    (``needs_rows`` tells the run not to stream the model through the engine). Rows
    leaving the warehouse are mapped and coerced here; a row whose value its field
    cannot hold goes to ``on_uncastable`` (set by the run) instead of the writer.
    Nothing here needs DuckDB (importing and opening it costs a run ~50 MB of
    resident memory): the removed keys of a mirror sync are held as Arrow.
    """

    needs_rows = False

    def __init__(
        self, bookkeeping: Bookkeeping, *, query: str, mappings: list[dict[str, Any]],
        key_field: str, types: dict[str, tuple[str, pa.DataType]] | None = None,
    ) -> None:
        self.bk = bookkeeping
        self.query = query
        self.mappings = mappings
        self.key_field = key_field
        self.types = types or {}
        self.on_uncastable: Callable[[pa.Table, list[str]], None] | None = None
        self._counts = {"source": 0, "invalid": 0, "changed": 0, "removed": 0}
        try:
            columns = bookkeeping.query_columns(query)
            self._key_column, self._hashed = self._resolve(columns)
        except BaseException:
            bookkeeping.close()
            raise
        self._removed = pa.array([], pa.string())

    def _resolve(self, columns: list[str]) -> tuple[str, list[str]]:
        """Source column of each column mapping, case-insensitively as ``map_batch``."""
        key, hashed = "", []
        for mapping in self.mappings:
            if mapping["from"]["type"] != "column":
                continue
            name = _match(columns, mapping["from"]["data"])
            hashed.append(name)
            if mapping["is_primary_identifier"]:
                key = name
        return key, hashed

    # -- bookkeeping ---------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        return self.bk.meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.bk.set_meta(key, value)

    def reset(self) -> None:
        self.bk.reset()

    # -- diffing -------------------------------------------------------------------------
    def stage(self, table: pa.Table, key_field: str) -> None:
        raise NotImplementedError("the warehouse reads the model itself; see needs_rows")

    def classify(self, *, full: bool) -> tuple[int, int]:
        self._counts = self.bk.diff(
            self.query, key_column=self._key_column, hashed_columns=self._hashed, full=full
        )
        return self._counts["invalid"], self._counts["changed"]

    def source_count(self) -> int:
        return self._counts["source"]

    def removed_count(self, *, keep: pa.Array | None = None) -> int:
        """Pull the removed keys (the only rows of them that leave the warehouse),
        except those in ``keep`` (rows still there but invalid this run)."""
        chunks = [b.column(0).cast(pa.string()) for b in self.bk.rows("removed", 100_000)]
        removed = pa.chunked_array(chunks, pa.string()).combine_chunks()
        if keep is not None and len(keep) and len(removed):
            removed = removed.filter(pc.invert(pc.is_in(removed, value_set=keep)))
        self._removed = removed
        return len(removed)

    def batches(self, table: str, batch_size: int) -> Iterator[pa.RecordBatch]:
        """Rows of ``changed``/``invalid`` mapped and coerced as the engine-side store
        has them (mapped columns, then key and hash); ``removed``: the key only."""
        if table == "removed":
            yield from pa.table({KEY: self._removed}).to_batches(max_chunksize=batch_size)
            return
        for batch in self.bk.rows(table, batch_size):
            source = batch.select(list(range(batch.num_columns - 2)))
            mapped = map_batch(source, self.mappings, {})
            mapped = mapped.append_column(KEY, batch.column(KEY))
            mapped = mapped.append_column(HASH, batch.column(HASH))
            coerced = coerce(mapped, self.types)
            if coerced.invalid.num_rows and self.on_uncastable is not None:
                self.on_uncastable(coerced.invalid, coerced.reasons)
            yield from coerced.valid.combine_chunks().to_batches()

    # -- committing ----------------------------------------------------------------------
    def commit_delivered(self, keys: pa.Array, hashes: pa.Array) -> None:
        self.bk.commit(keys, hashes)

    def commit_removed(self, keys: pa.Array) -> None:
        self.bk.remove(keys)

    def close(self) -> None:
        if not getattr(self, "_closed", False):
            self._closed = True
            self.bk.close()


def _match(columns: list[str], name: str) -> str:
    if name in columns:
        return name
    folded = [c for c in columns if c.lower() == name.lower()]
    if len(folded) != 1:
        raise TerminalError(f"mapped column {name!r} is not in the source object")
    return folded[0]
