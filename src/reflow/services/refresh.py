"""Census's asynchronous refresh pattern: a ``refresh_key`` now, ``*_status`` later.

A job is a ``refresh_jobs`` row, handed to the background pool once its transaction
commits. The worker reads what it needs, talks to the source outside any database
transaction, then stores the result and marks the job in one short transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.db.engine import after_commit
from reflow.db.tables import Source, utcnow
from reflow.db.tables_sources import RefreshJob
from reflow.errors import BadRequest, NotFound, ReflowError
from reflow.runtime import Runtime

log = logging.getLogger(__name__)

KINDS = ("tables", "table_columns", "model_columns", "segment_count")


def start(
    session: Session, *, runtime: Runtime, source: Source, kind: str, target_id: int | None = None
) -> RefreshJob:
    assert kind in KINDS
    job = RefreshJob(
        workspace_id=source.workspace_id, source_id=source.id, kind=kind, target_id=target_id
    )
    session.add(job)
    session.flush()
    job_id = job.id

    def release() -> None:
        from reflow.jobs.background import jobs_for

        jobs_for(runtime).submit(job_id)

    after_commit(session, release)
    return job


def get(
    session: Session, *, source: Source, refresh_key: Any, kind: str, target_id: int | None = None
) -> RefreshJob:
    """The job behind ``refresh_key`` for this object, or 404 (400 if the key is bad)."""
    if refresh_key is None or refresh_key == "":
        raise BadRequest("refresh_key is required")
    try:
        key = int(refresh_key)
    except (TypeError, ValueError):
        raise BadRequest("refresh_key must be an integer") from None
    job = session.get(RefreshJob, key)
    if (
        job is None
        or job.source_id != source.id
        or job.kind != kind
        or (target_id is not None and job.target_id != target_id)
    ):
        raise NotFound(f"refresh_key {key} not found")
    return job


def status_body(job: RefreshJob) -> tuple[dict[str, Any], int]:
    """``processing``/``completed``; a failed refresh is a 400 with the source's message."""
    if job.status == "failed":
        return {"status": "failed", "message": job.message or "refresh failed"}, 400
    return {"status": job.status}, 200


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
        message = getattr(exc, "message", None) or str(exc).strip() or type(exc).__name__
        log.info("refresh job %s (%s) failed: %s", job_id, job.kind, message)
        finish(runtime, job_id, status="failed", message=message)
        return


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
