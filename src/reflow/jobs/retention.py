"""What runs keep outside the state database is kept for a while, then deleted.

* Record logs (the succeeded-record Parquet parts, exports and the rejected/invalid
  records in ``sync_run_records``) of runs that finished more than
  ``REFLOW_RECORD_RETENTION_DAYS`` ago (default 14, as Census Sync Tracking) are deleted
  by the scheduler.
* A deleted sync's engine-side snapshot and its runs' files go with it
  (services/sync_cleanup.py).
* Expired records exports kept in object storage are deleted here (an API process
  prunes those on its own disk when it writes a new export).
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, select

from reflow.db.tables import SyncRun, SyncRunRecord, utcnow
from reflow.runtime import Runtime
from reflow.storage import StorageError

log = logging.getLogger(__name__)


def prune(runtime: Runtime, now: dt.datetime | None = None) -> int:
    """Delete record logs of runs finished before the retention window, and files of runs
    that no longer exist. Returns how many runs' files were deleted."""
    cutoff = (now or utcnow()) - dt.timedelta(days=runtime.settings.record_retention_days)
    old = select(SyncRun.id).where(SyncRun.completed_at < cutoff)
    with runtime.session() as session:
        session.execute(delete(SyncRunRecord).where(SyncRunRecord.run_id.in_(old)))
        present = runtime.run_files.run_ids()
        if not present:
            return 0
        keep = set(session.scalars(select(SyncRun.id).where(
            SyncRun.id.in_(present),
            (SyncRun.completed_at.is_(None)) | (SyncRun.completed_at >= cutoff))))
    gone = sorted(present - keep)
    for run_id in gone:
        runtime.run_files.delete(run_id)
    if gone:
        log.info("retention: deleted the record logs of %d runs finished before %s",
                 len(gone), cutoff.isoformat())
    _prune_shared_exports(runtime, now or utcnow())
    return len(gone)


def _prune_shared_exports(runtime: Runtime, now: dt.datetime) -> int:
    """Delete expired exports (``<run id>/export/<token>/``) from the shared store:
    one listing of it, and one read of each export's expiry."""
    files = runtime.run_files
    expired = []
    for key in files.shared_keys():
        parts = key.split("/")
        if len(parts) != 4 or parts[1] != "export" or parts[3] != "expires":
            continue
        try:
            expires = int(files.read_shared(key))
        except (StorageError, ValueError):
            expires = 0  # unreadable: as an export without an expiry, expired
        if now.timestamp() > expires:
            expired.append((int(parts[0]), f"export/{parts[2]}"))
    for run_id, folder in expired:
        files.delete_folder(run_id, folder)
    return len(expired)
