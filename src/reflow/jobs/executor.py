"""Executors run sync runs. ``local`` runs them on threads inside ``reflow serve``;
``celery`` (a later issue) hands run ids to workers through a broker. Both only
ever pass run ids: the control-plane database is the truth."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from sqlalchemy import select, update

from reflow.db.engine import after_commit
from reflow.db.tables import SyncRun, utcnow
from reflow.runtime import Executor, Runtime
from reflow.services import events

log = logging.getLogger(__name__)


class LocalExecutor:
    """Worker threads in this process. With ``watch_seconds`` it also runs what other
    processes queued (``reflow serve --workers N``: only one process executes runs, the
    others leave them queued), looking for queued runs that often."""

    def __init__(self, runtime: Runtime, *, workers: int | None = None,
                 watch_seconds: float | None = None) -> None:
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(
            max_workers=workers or runtime.settings.local_workers, thread_name_prefix="reflow-run"
        )
        self._stop = threading.Event()
        self._futures: dict[Future[None], int] = {}
        self._lock = threading.Lock()
        self._watch_seconds = watch_seconds

    def submit(self, run_id: int) -> None:
        from reflow.jobs.heartbeat import run_once

        if self._stop.is_set():
            log.warning("run %s not started: the executor is shutting down", run_id)
            return
        with self._lock:
            if run_id in self._futures.values():
                return  # already waiting for a worker thread here
            future = self._pool.submit(run_once, self.runtime, run_id, self._stop)
            self._futures[future] = run_id
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.pop(future, None)

    def _watch(self) -> None:
        """Submit queued runs other processes committed. A run submitted twice is run
        once: the engine claims it with a conditional update."""
        assert self._watch_seconds is not None
        while not self._stop.wait(self._watch_seconds):
            try:
                with self.runtime.session() as session:
                    queued = session.scalars(
                        select(SyncRun.id).where(SyncRun.status == "queued").order_by(SyncRun.id)
                    ).all()
            except Exception:  # a database restart must not end the watch
                log.exception("looking for queued runs failed")
                continue
            for run_id in queued:
                self.submit(run_id)

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
        if self._watch_seconds is not None:
            threading.Thread(target=self._watch, name="reflow-run-watch", daemon=True).start()

    def shutdown(self, *, wait: bool = True) -> None:
        """Ask running runs to stop at their next batch boundary, then wait for them."""
        self._stop.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def idle(self) -> bool:
        with self._lock:
            return not self._futures


def make_executor(runtime: Runtime, *, watch_seconds: float | None = None) -> Executor:
    """The executor ``REFLOW_EXECUTOR`` names: ``local`` threads or ``celery`` workers."""
    if runtime.settings.executor == "celery":
        from reflow.jobs.celery_app import CeleryExecutor

        return CeleryExecutor(runtime)
    return LocalExecutor(runtime, watch_seconds=watch_seconds)


class LeaveQueued:
    """The local executor of a ``reflow serve --workers N`` API process: a triggered run
    stays queued (committed) and the parent's executor, which watches for queued runs,
    runs it."""

    def submit(self, run_id: int) -> None:
        log.debug("run %s left queued for the executor of the parent process", run_id)

    def start(self) -> None:
        pass

    def shutdown(self, *, wait: bool = True) -> None:
        pass
