"""Destination jobs (object refreshes, object creation) run on the runtime's background
pool of :mod:`reflow.jobs.background`, the one source refreshes use, so a process keeps
one small pool and one shutdown path. Only job ids travel, and only after commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from reflow.jobs.background import jobs_for

if TYPE_CHECKING:
    from reflow.runtime import Runtime

log = logging.getLogger(__name__)


def submit(runtime: Runtime, job_id: int, run: Callable[[Runtime, int], None]) -> None:
    pool = jobs_for(runtime)
    if getattr(pool, "_closed", False):
        log.warning("destination job %s not started: shutting down", job_id)
        return
    # BackgroundJobs.submit is bound to source refresh jobs; its executor runs ours.
    pool._pool.submit(_guarded, run, runtime, job_id)


def _guarded(run: Callable[[Runtime, int], None], runtime: Runtime, job_id: int) -> None:
    try:
        run(runtime, job_id)
    except Exception:  # a job records its own failure; this is the last resort
        log.exception("destination job %s crashed", job_id)
