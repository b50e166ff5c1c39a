"""Background refresh jobs (table lists, columns, segment counts) on a small thread
pool of the API process. The job's row in ``refresh_jobs`` is the truth, so any API
process answers ``*_status``; the pool only ever receives job ids, after commit."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reflow.runtime import Runtime

log = logging.getLogger(__name__)

_ATTR = "_reflow_background"
_lock = threading.Lock()


class BackgroundJobs:
    def __init__(self, runtime: Runtime, *, workers: int = 2) -> None:
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reflow-refresh")
        self._closed = False

    def submit(self, job_id: int) -> None:
        from reflow.services.refresh import run_job

        if self._closed:
            log.warning("refresh job %s not started: shutting down", job_id)
            return
        self._pool.submit(_guarded, run_job, self.runtime, job_id)

    def shutdown(self, *, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)


def _guarded(fn: object, runtime: Runtime, job_id: int) -> None:
    try:
        fn(runtime, job_id)  # type: ignore[operator]
    except Exception:  # a job records its own failure; this is the last resort
        log.exception("refresh job %s crashed", job_id)


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
