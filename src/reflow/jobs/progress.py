"""A run's state in the control-plane database. Every transition is a conditional
update, so a duplicated job can never run a sync twice.

:class:`StateReporter` is the engine's ``RunReporter`` over these functions: what the
engine reports lands here, and a run's start and end set off its webhook events and,
once completed, the syncs sequenced after it."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import aliased, object_session

from reflow.db.engine import after_commit
from reflow.db.tables import Sync, SyncRun, SyncRunRecord, utcnow
from reflow.runtime import Runtime
from reflow.services import events
from reflow.services.sequences import trigger_followers

log = logging.getLogger(__name__)


def claim(runtime: Runtime, run_id: int) -> bool:
    """queued -> working, at most once, and never while another run of the same sync
    works: claims of one sync serialize on its row lock (PostgreSQL; SQLite has a single
    writer). A queued run that finds its sync busy is recorded as skipped."""
    with runtime.session() as session:
        sync_id = session.scalar(select(SyncRun.sync_id).where(SyncRun.id == run_id))
        if sync_id is None:
            return False
        session.execute(select(Sync.id).where(Sync.id == sync_id).with_for_update())
        other = aliased(SyncRun)
        busy = select(other.id).where(other.sync_id == sync_id, other.status == "working")
        result = session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == "queued", ~busy.exists())
            .values(status="working", started_at=utcnow(), heartbeat_at=utcnow(),
                    current_step="Checking source and destination configuration")
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]  # UPDATE: a CursorResult
            after_commit(session, lambda: events.run_started(runtime, run_id))  # never raises
            return True
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == "queued")
            .values(status="skipped", completed_at=utcnow(),
                    error_message="skipped: another run of this sync was still running")
        )
        return False


def report(runtime: Runtime, run_id: int, **values: Any) -> bool:
    """Update a working run; returns whether cancellation was requested."""
    with runtime.session() as session:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == "working")
            .values(heartbeat_at=utcnow(), **values)
        )
        return bool(session.scalar(select(SyncRun.cancel_requested).where(SyncRun.id == run_id)))


def finish(runtime: Runtime, run_id: int, *, status: str, **values: Any) -> None:
    with runtime.session() as session:
        result = session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == "working")
            .values(status=status, completed_at=utcnow(), current_step=None, **values)
        )
        after_commit(session, lambda: events.run_finished(runtime, run_id))  # never raises
        ended = result.rowcount == 1  # type: ignore[attr-defined]
        if ended:
            _log_outcome(session.get(SyncRun, run_id))
        if status == "completed" and ended:
            # Same transaction: a completed run and the runs it sets off commit together.
            trigger_followers(runtime, session, run_id=run_id)


def _log_outcome(run: SyncRun | None) -> None:
    """One line per run at its end, with what an operator asks first: how it ended,
    how many rows it read, refused and delivered, and how long it took."""
    if run is None:
        return
    session = object_session(run)
    if session is not None:
        session.refresh(run)
    seconds = None
    if run.started_at is not None and run.completed_at is not None:
        seconds = (_aware(run.completed_at) - _aware(run.started_at)).total_seconds()
    counts = {
        "extracted": run.source_record_count or 0,
        "invalid": run.source_record_invalids or 0,
        "failed": run.records_failed or 0,
        "updated": run.records_updated or 0,
        "deleted": run.source_record_deletes or 0,
    }
    outcome = "canceled" if run.canceled else run.status
    log.info(
        "run %s of sync %s %s in %ss: %s", run.id, run.sync_id, outcome,
        "?" if seconds is None else f"{seconds:.1f}",
        " ".join(f"{k}={v}" for k, v in counts.items()),
        extra={"sync_id": run.sync_id, "run_id": run.id, "status": run.status,
               "duration_seconds": seconds, **counts},
    )


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def log_records(
    runtime: Runtime, run_id: int, records: list[dict[str, Any]], *, status: str, operation: str
) -> None:
    """Keep invalid/rejected records with their reasons (served by the records API)."""
    if not records:
        return
    with runtime.session() as session:
        session.add_all(
            SyncRunRecord(
                run_id=run_id,
                identifier=r["identifier"],
                status=status,
                operation=operation,
                status_message=r["reason"],
                record_payload=json.loads(json.dumps(r["payload"], default=str)),
            )
            for r in records
        )


class StateReporter:
    """The engine's ``RunReporter`` for run ``run_id`` of the state database."""

    def __init__(self, runtime: Runtime, run_id: int) -> None:
        self.runtime = runtime
        self.run_id = run_id

    def progress(self, **values: Any) -> bool:
        return report(self.runtime, self.run_id, **values)

    def log_records(
        self, records: list[dict[str, Any]], *, status: str, operation: str
    ) -> None:
        log_records(self.runtime, self.run_id, records, status=status, operation=operation)

    def finish(self, *, status: str, **values: Any) -> None:
        finish(self.runtime, self.run_id, status=status, **values)
