"""Census's asynchronous refresh pattern: a ``refresh_key`` now, ``*_status`` later.

A job is a ``refresh_jobs`` row, handed to the background pool once its transaction
commits. The worker reads what it needs, talks to the source outside any database
transaction, then stores the result and marks the job in one short transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.db.engine import after_commit
from reflow.db.tables import Source, utcnow
from reflow.db.tables_destinations import DestinationJob
from reflow.db.tables_sources import RefreshJob
from reflow.errors import BadRequest, NotFound, ReflowError
from reflow.runtime import Runtime
from reflow.services import background
from reflow.services.background import fail_if_lost

log = logging.getLogger(__name__)

KINDS = ("tables", "table_columns", "model_columns", "segment_count")


Job = TypeVar("Job", RefreshJob, DestinationJob)


def enqueue(session: Session, job: Job, release: Callable[[int], None]) -> Job:
    """Add ``job`` and hand its id to ``release`` (the background pool) only once the
    transaction commits, so a worker never looks for a row it cannot see yet."""
    session.add(job)
    session.flush()
    job_id = job.id
    after_commit(session, lambda: release(job_id))
    return job


def find(
    session: Session, model: type[Job], refresh_key: Any, belongs: Callable[[Job], bool]
) -> Job:
    """The job behind ``refresh_key`` if it ``belongs`` to the object asked about, or
    404 (400 if the key is bad)."""
    if refresh_key is None or refresh_key == "":
        raise BadRequest("refresh_key is required")
    try:
        key = int(refresh_key)
    except (TypeError, ValueError):
        raise BadRequest("refresh_key must be an integer") from None
    job = session.get(model, key)
    if job is None or not belongs(job):
        raise NotFound(f"refresh_key {key} not found")
    fail_if_lost(session, job)  # left processing by a process that died
    return job


def status_body(job: RefreshJob | DestinationJob) -> tuple[dict[str, Any], int]:
    """``processing``/``completed``; a failed job is a 400 with the connection's message."""
    if job.status == "failed":
        return {"status": "failed", "message": job.message or "refresh failed"}, 400
    return {"status": job.status}, 200


def start(
    session: Session, *, runtime: Runtime, source: Source, kind: str, target_id: int | None = None
) -> RefreshJob:
    assert kind in KINDS
    job = RefreshJob(
        workspace_id=source.workspace_id, source_id=source.id, kind=kind, target_id=target_id
    )

    return enqueue(session, job, lambda job_id: background.submit(runtime, job_id, run_job))


def get(
    session: Session, *, source: Source, refresh_key: Any, kind: str, target_id: int | None = None
) -> RefreshJob:
    """The job behind ``refresh_key`` for this object, or 404 (400 if the key is bad)."""
    return find(
        session,
        RefreshJob,
        refresh_key,
        lambda job: (
            job.source_id == source.id
            and job.kind == kind
            and (target_id is None or job.target_id == target_id)
        ),
    )


def latest(
    session: Session, *, source_id: int, kind: str, target_id: int | None = None
) -> RefreshJob | None:
    stmt = select(RefreshJob).where(RefreshJob.source_id == source_id, RefreshJob.kind == kind)
    if target_id is not None:
        stmt = stmt.where(RefreshJob.target_id == target_id)
    return session.scalars(stmt.order_by(RefreshJob.id.desc()).limit(1)).first()


def run_job(runtime: Runtime, job_id: int) -> None:
    """Run one job to its end state; never raises for an expected failure."""
    from reflow.services import segments, source_catalog

    workers: dict[str, Callable[[Runtime, RefreshJob], None]] = {
        "tables": source_catalog.refresh_tables_job,
        "table_columns": source_catalog.refresh_table_columns_job,
        "model_columns": source_catalog.refresh_model_columns_job,
        "segment_count": segments.count_job,
    }
    with runtime.session() as session:
        job = session.get(RefreshJob, job_id)
        if job is None or job.status != "processing":
            return
        session.expunge(job)
    try:
        workers[job.kind](runtime, job)
    except (ReflowError, Exception) as exc:  # the source's own message is the point
        message = failure_message(exc)
        log.info("refresh job %s (%s) failed: %s", job_id, job.kind, message)
        finish(runtime, job_id, status="failed", message=message)
        return


def failure_message(exc: BaseException) -> str:
    """What a failed job reports: the connector's own message, when it has one."""
    return getattr(exc, "message", None) or str(exc).strip() or type(exc).__name__


def finish(
    runtime: Runtime,
    job_id: int,
    *,
    status: str = "completed",
    message: str | None = None,
    store: Callable[[Session], None] | None = None,
) -> None:
    """Store a job's result (if any) and mark the job, in one transaction."""
    with runtime.session() as session:
        if store is not None:
            store(session)
        job = session.get(RefreshJob, job_id)
        if job is not None:
            job.status, job.message, job.completed_at = status, message, utcnow()
