"""Background jobs on a small thread pool of the API process: source refreshes (table
lists, columns, segment counts; ``refresh_jobs``) and destination jobs (object refreshes
and creation; ``destination_jobs``), one pool and one shutdown path for both. The job's
row is the truth, so any API process answers ``*_status``; the pool only ever receives
job ids, after commit.

A job holds no lease: the process running it may die (a crash, a kill) and leave it
``processing``. One still ``processing`` ``LOST_AFTER`` after it was created is failed
when its status is read, and by the sweep at start-up."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from reflow.db.tables import utcnow
from reflow.db.tables_destinations import DestinationJob
from reflow.db.tables_sources import RefreshJob

if TYPE_CHECKING:
    from reflow.runtime import Runtime

log = logging.getLogger(__name__)

#: Longer than any refresh takes while its process lives (its queries time out first).
LOST_AFTER = dt.timedelta(minutes=30)
LOST_MESSAGE = (
    "the process running this job stopped before it finished (no result after "
    f"{int(LOST_AFTER.total_seconds() // 60)} minutes); start it again"
)
Job = RefreshJob | DestinationJob

_ATTR = "_reflow_background"
_lock = threading.Lock()


class BackgroundJobs:
    def __init__(self, runtime: Runtime, *, workers: int = 2) -> None:
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reflow-refresh")
        self._closed = False

    def submit_call(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        """Run ``fn(*args)`` on the pool; None (and not run) once shutting down."""
        if self._closed:
            return None
        return self._pool.submit(fn, *args)

    def shutdown(self, *, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)


def submit(
    runtime: Runtime, job_id: int, run: Callable[[Runtime, int], None], *,
    kind: str = "refresh job",
) -> None:
    """Run ``run(runtime, job_id)`` on the runtime's pool (``kind`` names it in logs)."""
    if jobs_for(runtime).submit_call(_guarded, run, runtime, job_id, kind) is None:
        log.warning("%s %s not started: shutting down", kind, job_id)


def _guarded(run: Callable[[Runtime, int], None], runtime: Runtime, job_id: int,
             kind: str) -> None:
    try:
        run(runtime, job_id)
    except Exception:  # a job records its own failure; this is the last resort
        log.exception("%s %s crashed", kind, job_id)


def jobs_for(runtime: Runtime) -> BackgroundJobs:
    """The runtime's pool, created on first use."""
    with _lock:
        jobs = runtime.__dict__.get(_ATTR)
        if jobs is None:
            jobs = BackgroundJobs(runtime)
            setattr(runtime, _ATTR, jobs)
        return jobs


def shutdown(runtime: Runtime) -> None:
    with _lock:
        jobs = runtime.__dict__.pop(_ATTR, None)
    if jobs is not None:
        jobs.shutdown(wait=True)


# --- jobs whose process died --------------------------------------------------------


def fail_if_lost(session: Session, job: Job) -> None:
    """Fail ``job`` if it is lost (see the module docstring), then reload it. Status
    reads do not commit, so the change commits in its own short transaction."""
    created = job.created_at.replace(tzinfo=job.created_at.tzinfo or dt.UTC)
    if job.status != "processing" or created > utcnow() - LOST_AFTER:
        return
    with Session(session.get_bind()) as own, own.begin():
        _fail_lost(own, type(job), job_id=job.id)
    session.refresh(job)


def sweep_lost(runtime: Runtime) -> int:
    """Fail every lost job of either kind; at start-up."""
    with runtime.session() as session:
        return sum(_fail_lost(session, table) for table in (RefreshJob, DestinationJob))


def _fail_lost(session: Session, table: type[Job], *, job_id: int | None = None) -> int:
    now = utcnow()
    stmt = update(table).where(table.status == "processing", table.created_at < now - LOST_AFTER)
    if job_id is not None:
        stmt = stmt.where(table.id == job_id)
    values = {"status": "failed", "message": LOST_MESSAGE, "completed_at": now}
    result = session.execute(stmt.values(**values))
    return int(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
