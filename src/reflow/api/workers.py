"""``reflow serve --workers N``: N API processes, and the scheduler and the local
executor once, in the parent process.

uvicorn's parent process binds the socket and supervises N worker processes (spawned,
so they inherit no thread); each builds its app here from the environment (``REFLOW_*``,
as the ``reflow serve`` that started them read it) and only serves the API: a run it
triggers is committed as queued and left to the parent. The parent runs the scheduler
and the local executor, which also watches for queued runs. So a sync run never shares
a process (a GIL) with request handling, and what must run once runs once. With the
Celery executor every worker hands runs to the broker, and the parent only schedules.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from reflow.runtime import Runtime

#: How often the parent looks for runs the workers queued.
WATCH_SECONDS = 0.5

log = logging.getLogger(__name__)


def serve(runtime: Runtime, *, workers: int, host: str, port: int, log_level: str) -> None:
    """Run the workers until uvicorn stops them (SIGINT/SIGTERM), then stop the runs at
    their next batch boundary, as a single ``reflow serve`` does at shutdown."""
    import uvicorn

    from reflow.jobs.executor import make_executor
    from reflow.jobs.scheduler import Scheduler, embedded

    runtime.executor = make_executor(runtime, watch_seconds=WATCH_SECONDS)
    runtime.executor.start()
    scheduler = Scheduler(runtime) if embedded(runtime) else None
    if scheduler is not None:
        scheduler.start()
    log.info("reflow serve %s: scheduler and sync runs; %s API workers", os.getpid(), workers)
    try:
        uvicorn.run("reflow.api.workers:create_worker_app", factory=True, workers=workers,
                    host=host, port=port, log_level=log_level, access_log=access_log(log_level))
    finally:
        if scheduler is not None:
            scheduler.stop()
        runtime.executor.shutdown(wait=True)


def access_log(log_level: str) -> bool:
    """uvicorn's access log only where its lines are kept: it logs at INFO, and formed
    each line's arguments (the client's address, the quoted path) for every request
    even when the level dropped the line."""
    level = logging.getLevelName(log_level.upper())
    return not isinstance(level, int) or level <= logging.INFO  # "trace" is uvicorn's own


def create_worker_app() -> FastAPI:
    from reflow.api.app import create_app
    from reflow.config import get_settings
    from reflow.jobs.executor import LeaveQueued, make_executor
    from reflow.jobs.logcontext import configure_logging
    from reflow.runtime import Runtime

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    runtime = Runtime.from_settings(settings.model_copy(update={"embedded_scheduler": False}))
    runtime.executor = LeaveQueued() if settings.executor == "local" else make_executor(runtime)
    log.info("reflow serve worker %s: API only", os.getpid())
    return create_app(runtime)
