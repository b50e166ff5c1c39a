"""What a deleted sync leaves outside the state database: its engine-side snapshot file
and its bookkeeping tables in the source warehouse (the in-warehouse diff)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from reflow.db.tables import Source
from reflow.services import sources

if TYPE_CHECKING:
    from reflow.runtime import Runtime

log = logging.getLogger(__name__)

#: Seconds between attempts to drop a deleted sync's bookkeeping while a run of it
#: still holds the tables (about a quarter of an hour in all).
DROP_RETRY_DELAYS = (1, 2, 5, 10, 30, 60, 120, 300, 300)


def forget_snapshots(
    runtime: Runtime, sync_id: int, source: Source | None, run_ids: Sequence[int] = ()
) -> None:
    """Drop a deleted sync's snapshots and its runs' files: the engine-side snapshot and
    record logs now (from run storage, local or shared), the in-warehouse bookkeeping
    tables on a thread of their own, so a slow or unreachable warehouse never holds up
    the delete. Best effort: a failure is logged, never raised (leftover run files are
    pruned by age later)."""
    from reflow.engine.warehouse_diff import snapshot_key

    key = snapshot_key(sync_id)
    try:
        runtime.snapshots.delete(key)
        runtime.snapshots.delete(f"{key}.wal")
        for run_id in run_ids:
            runtime.run_files.delete(run_id)
    except Exception:
        log.warning("sync %s: could not remove its snapshot or run files", sync_id,
                    exc_info=True)
    threading.Thread(target=_drop_bookkeeping, args=(runtime, sync_id, source),
                     name=f"reflow-forget-sync-{sync_id}", daemon=True).start()


def _drop_bookkeeping(runtime: Runtime, sync_id: int, source: Source | None,
                      retry_delays: Sequence[float] = DROP_RETRY_DELAYS) -> None:
    """Drop the tables, trying again while a run of the sync still holds them (the
    drop gives up on a lock quickly rather than stall that run; see ``drop``)."""
    if source is None:
        return
    for delay in (*retry_delays, None):
        try:
            connector = sources.connector(source, vault=runtime.vault)
            try:
                drop = getattr(connector, "drop_bookkeeping", None)
                if callable(getattr(connector, "open_bookkeeping", None)) and callable(drop):
                    drop(sync_id, namespace=runtime.installation_id())
                return
            finally:
                connector.close()
        except Exception:
            if delay is None:
                log.warning("sync %s: its bookkeeping tables in source %s could not be "
                            "dropped", sync_id, source.id, exc_info=True)
                return
            log.info("sync %s: bookkeeping not dropped yet; trying again in %ss",
                     sync_id, delay, exc_info=True)
            time.sleep(delay)
