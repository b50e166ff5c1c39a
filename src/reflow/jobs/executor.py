"""Executors run sync runs. ``local`` runs them on threads inside ``reflow serve``;
``celery`` (a later issue) hands run ids to workers through a broker. Both only
ever pass run ids: the control-plane database is the truth."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Protocol

from sqlalchemy import select, update

from reflow import events
from reflow.db.engine import after_commit
from reflow.db.tables import SyncRun, utcnow
from reflow.runtime import Runtime

log = logging.getLogger(__name__)


class Executor(Protocol):
    def submit(self, run_id: int) -> None: ...

    def start(self) -> None: ...

    def shutdown(self, *, wait: bool = True) -> None: ...


class LocalExecutor:
    """Worker threads in this process."""

    def __init__(self, runtime: Runtime, *, workers: int | None = None) -> None:
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(
            max_workers=workers or runtime.settings.local_workers, thread_name_prefix="reflow-run"
        )
        self._stop = threading.Event()
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, run_id: int) -> None:
        from reflow.jobs.heartbeat import run_once

        if self._stop.is_set():
            log.warning("run %s not started: the executor is shutting down", run_id)
            return
        future = self._pool.submit(run_once, self.runtime, run_id, self._stop)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def start(self) -> None:
        """Recover what a previous process left: in the embedded default this process
        is the only executor, so a ``working`` run is an orphan of a crash."""
        with self.runtime.session() as session:
            orphans = session.scalars(
                update(SyncRun)
                .where(SyncRun.status == "working")
                .values(status="failed", completed_at=utcnow(), current_step=None,
                        error_message="interrupted: Reflow stopped while this run was working")
                .returning(SyncRun.id)
            ).all()
            for run_id in orphans:  # they never reach the engine's finish, which announces ends
                after_commit(session, partial(events.run_finished, self.runtime, run_id))
            queued = session.scalars(select(SyncRun.id).where(SyncRun.status == "queued")).all()
        for run_id in queued:
            self.submit(run_id)

    def shutdown(self, *, wait: bool = True) -> None:
        """Ask running runs to stop at their next batch boundary, then wait for them."""
        self._stop.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def idle(self) -> bool:
        with self._lock:
            return not self._futures


def make_executor(runtime: Runtime) -> Executor:
    """The executor ``REFLOW_EXECUTOR`` names: ``local`` threads or ``celery`` workers."""
    if runtime.settings.executor == "celery":
        from reflow.jobs.celery_app import CeleryExecutor

        return CeleryExecutor(runtime)
    return LocalExecutor(runtime)
