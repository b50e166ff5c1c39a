"""The app of one process of ``reflow serve --workers N``.

uvicorn starts N processes sharing one listening socket; each builds its app here from
the environment (``REFLOW_*``, as the ``reflow serve`` that started them read it). One
of them, elected by a lock file in ``REFLOW_HOME`` (``jobs.executor.elect_runner``),
runs what must run exactly once: the scheduler and the local executor, which also
executes the runs the other processes queued. The others only serve the API: a run
they trigger is committed as queued and left to the runner. With the Celery executor
every process hands runs to the broker, and only the runner schedules.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

#: How often the runner looks for runs the other processes queued.
WATCH_SECONDS = 0.5

log = logging.getLogger(__name__)


def create_worker_app() -> FastAPI:
    import os

    from reflow.api.app import create_app
    from reflow.config import get_settings
    from reflow.jobs.executor import LeaveQueued, elect_runner, make_executor
    from reflow.jobs.logcontext import configure_logging
    from reflow.runtime import Runtime

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    runner = elect_runner(settings.home)
    if not runner:
        settings = settings.model_copy(update={"embedded_scheduler": False})
    runtime = Runtime.from_settings(settings)
    if runner:
        runtime.executor = make_executor(runtime, watch_seconds=WATCH_SECONDS)
    elif settings.executor == "local":
        runtime.executor = LeaveQueued()
    else:
        runtime.executor = make_executor(runtime)
    log.info("reflow serve worker %s: %s", os.getpid(),
             "runner (scheduler and sync runs)" if runner else "API only")
    return create_app(runtime)
