"""The Celery executor: the API and the scheduler send run ids through the broker
(``REFLOW_BROKER_URL``, Redis or RabbitMQ); ``reflow worker`` processes execute them.

The broker only carries run ids. Delivery is at-least-once (``acks_late``, a message
of a worker that died is redelivered); the queued -> working conditional update in
``jobs.progress.claim`` makes every delivery after the first a no-op.

Workers use Celery's thread pool: the engine spends its time in pyarrow, DuckDB and
database drivers (which release the GIL), and a warm shutdown can then reach the running
runs through one stop event, so each stops at its next batch boundary.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

from celery import Celery, signals

from reflow.config import Settings
from reflow.runtime import Runtime

log = logging.getLogger(__name__)

TASK_NAME = "reflow.execute_run"


def make_celery(settings: Settings) -> Celery:
    app = Celery("reflow", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
    )
    return app


class CeleryExecutor:
    """Hands run ids to the broker. Recovery of orphans is the scheduler's job (the
    reaper and the requeue sweep), not this process's: other workers may be running."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = make_celery(runtime.settings)
        share_saas_limits(runtime.settings.broker_url)

    def submit(self, run_id: int) -> None:
        self.app.send_task(TASK_NAME, args=[run_id], queue=self.runtime.settings.celery_queue)

    def start(self) -> None:
        pass

    def shutdown(self, *, wait: bool = True) -> None:
        pass


def worker_app(runtime: Runtime, shutdown: threading.Event) -> Celery:
    """The app a worker runs: one task, taking only a run id."""
    from reflow.jobs.heartbeat import run_once

    runtime.executor = CeleryExecutor(runtime)  # sequences enqueue from the worker
    app = runtime.executor.app

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
    def execute_run(run_id: int) -> None:
        run_once(runtime, int(run_id), shutdown)

    def stopping(**_: Any) -> None:
        # Warm shutdown: running runs stop at their next batch boundary and end failed
        # ("interrupted by shutdown"); Celery waits for them before exiting.
        log.info("warm shutdown: asking running runs to stop at their next batch")
        shutdown.set()

    signals.worker_shutting_down.connect(stopping, weak=False)
    return app


def run_worker(runtime: Runtime, *, concurrency: int) -> None:
    shutdown = threading.Event()
    app = worker_app(runtime, shutdown)
    settings = runtime.settings
    app.worker_main([
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={settings.celery_queue}",
        f"--hostname=reflow-{os.getpid()}-{uuid.uuid4().hex[:6]}@%h",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ])


def share_saas_limits(broker_url: str) -> None:
    """SaaS vendors limit a connection, not a process: with runs on several processes,
    their rate-limit buckets live in Redis (the broker's, when the broker is Redis;
    with RabbitMQ each process paces alone and 429s are still honoured)."""
    from reflow.connectors.saas.ratelimit import share_through_redis

    if broker_url.startswith(("redis://", "rediss://")):
        share_through_redis(broker_url)
