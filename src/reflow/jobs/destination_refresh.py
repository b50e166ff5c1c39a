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
    if jobs_for(runtime).submit_call(_guarded, run, runtime, job_id) is None:
        log.warning("destination job %s not started: shutting down", job_id)


def _guarded(run: Callable[[Runtime, int], None], runtime: Runtime, job_id: int) -> None:
    try:
        run(runtime, job_id)
    except Exception:  # a job records its own failure; this is the last resort
        log.exception("destination job %s crashed", job_id)
