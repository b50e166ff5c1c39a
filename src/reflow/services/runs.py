"""Sync runs: triggering, reading, cancelling."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from reflow.db.engine import after_commit
from reflow.db.hot import HotRead
from reflow.db.repo import Page, Paged, PageParams, get_scoped
from reflow.db.tables import Sync, SyncRun, utcnow
from reflow.errors import BadRequest, Conflict, NotFound
from reflow.services import events

ACTIVE = ("queued", "working")
TERMINAL = ("completed", "failed", "skipped")


def trigger(
    session: Session,
    *,
    sync: Sync,
    force_full_sync: bool = False,
    reason: dict[str, Any] | None = None,
    scheduled_for: dt.datetime | None = None,
) -> SyncRun:
    """A new queued run, or a ``skipped`` one when a run of the sync is still active.

    The caller enqueues a queued run after its transaction commits."""
    if force_full_sync and sync.operation == "append":
        raise BadRequest("force_full_sync is not available for append syncs")
    serialize_on_sync(session, sync_id=sync.id)
    active = session.scalar(
        select(SyncRun.id).where(SyncRun.sync_id == sync.id, SyncRun.status.in_(ACTIVE)).limit(1)
    )
    now = utcnow()
    run = SyncRun(
        workspace_id=sync.workspace_id,
        sync_id=sync.id,
        status="skipped" if active else "queued",
        force_full_sync=force_full_sync,
        full_sync=force_full_sync,
        scheduled_execution_time=scheduled_for,
        sync_trigger_reason=reason or {"ui_tag": "API", "ui_detail": "Triggered through the API"},
        completed_at=now if active else None,
    )
    if active:
        run.error_message = f"skipped: run {active} of this sync was still running"
    session.add(run)
    session.flush()
    hook = events.run_triggered if run.status == "queued" else events.run_ended
    after_commit(session, partial(hook, session.get_bind(), run.id))
    return run


def serialize_on_sync(session: Session, *, sync_id: int) -> None:
    """Hold the sync's write lock until the transaction ends, so triggers of one sync
    check for an active run and insert theirs one at a time: PostgreSQL locks the
    sync's row; SQLite has one writer, so taking the write lock before the check is
    enough (pysqlite would otherwise begin the transaction only at the insert)."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        session.execute(select(Sync.id).where(Sync.id == sync_id).with_for_update())
    elif not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def get(session: Session, *, workspace_id: int, run_id: int) -> SyncRun:
    return get_scoped(session, SyncRun, run_id, workspace_id, "sync run")


_RUN = HotRead(select(SyncRun.__table__).where(SyncRun.id == bindparam("run_id"),
                                               SyncRun.workspace_id == bindparam("workspace_id")))


def read(session: Session, *, workspace_id: int, run_id: int) -> Row[Any]:
    """``get`` as a row of the run's columns, no ORM object: GET /sync_runs/{id}, the
    read orchestrators poll, only renders it."""
    # Core on the session's connection: the ORM's execution layer has nothing to do.
    row = _RUN.first(session.connection(), {"run_id": run_id, "workspace_id": workspace_id})
    if row is None:
        raise NotFound(f"sync run {run_id} not found")
    return row


_FOR_SYNC = Paged(select(SyncRun).where(SyncRun.sync_id == bindparam("sync_id")), SyncRun.id)


def list_for_sync(session: Session, *, sync: Sync, params: PageParams) -> Page:
    return _FOR_SYNC.page(session, params, sync_id=sync.id)


def request_cancel(session: Session, *, run: SyncRun) -> None:
    """A queued run is cancelled at once; a working one stops at its next batch
    boundary (the engine reads the flag). A run that has ended cannot be cancelled:
    409, and nothing changes."""
    requested = session.execute(
        update(SyncRun)
        .where(SyncRun.id == run.id, SyncRun.status.in_(ACTIVE))
        .values(cancel_requested=True)
    ).rowcount  # type: ignore[attr-defined]
    if not requested:
        session.refresh(run)
        raise Conflict(f"sync run {run.id} has already ended ({run.status}); it cannot be"
                       " cancelled")
    canceled = session.execute(
        update(SyncRun)
        .where(SyncRun.id == run.id, SyncRun.status == "queued")
        .values(status="failed", canceled=True, completed_at=utcnow(),
                error_message="canceled before it started")
    ).rowcount  # type: ignore[attr-defined]
    if canceled:  # it never reaches the engine, whose finish would announce its end
        after_commit(session, partial(events.run_ended, session.get_bind(), run.id))
    session.refresh(run)
