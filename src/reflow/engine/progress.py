"""A run's state in the control-plane database. Every transition is a conditional
update, so a duplicated job can never run a sync twice."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from reflow import events
from reflow.db.engine import after_commit
from reflow.db.tables import Sync, SyncRun, SyncRunRecord, utcnow
from reflow.runtime import Runtime


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
        if result.rowcount == 1:
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
        if status == "completed" and result.rowcount == 1:
            # Same transaction: a completed run and the runs it sets off commit together.
            from reflow.jobs.sequences import trigger_followers

            trigger_followers(runtime, session, run_id=run_id)


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
