"""Running one run inside an executor: log context, heartbeat thread, stop signals.

Both executors (local threads, Celery workers) call :func:`run_once`, so a run behaves
the same wherever it executes."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from sqlalchemy import select, update

from reflow.db.tables import SyncRun, utcnow
from reflow.jobs.logcontext import run_context
from reflow.jobs.planning import execute
from reflow.runtime import Runtime

log = logging.getLogger(__name__)


class AnyEvent(threading.Event):
    """Set when it is set itself or when any of ``others`` is (shutdown of the process)."""

    def __init__(self, *others: threading.Event) -> None:
        super().__init__()
        self._others = others

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self._others)


class Heartbeat:
    """A thread that stamps ``heartbeat_at`` every ``interval`` seconds while the run is
    ``working``, independent of batch progress (a slow destination batch is not a dead
    worker). If the run stopped being ``working`` under us (the reaper declared this
    worker lost), ``lost`` is set so the engine stops at its next batch boundary."""

    def __init__(self, runtime: Runtime, run_id: int, lost: threading.Event) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.lost = lost
        self.interval = runtime.settings.heartbeat_interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a database hiccup must not kill the thread
                log.warning("heartbeat of run %s failed", self.run_id, exc_info=True)

    def beat(self) -> None:
        with self.runtime.session() as session:
            beaten = session.execute(
                update(SyncRun)
                .where(SyncRun.id == self.run_id, SyncRun.status == "working")
                .values(heartbeat_at=utcnow())
            ).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
            status = None if beaten else session.scalar(
                select(SyncRun.status).where(SyncRun.id == self.run_id)
            )
        if not beaten and status != "queued":
            self.lost.set()


def run_once(runtime: Runtime, run_id: int, shutdown: threading.Event) -> None:
    """Execute ``run_id`` (if it is still queued) with heartbeats; never raises."""
    try:
        with runtime.session() as session:
            sync_id = session.scalar(select(SyncRun.sync_id).where(SyncRun.id == run_id))
    except Exception:
        log.exception("run %s: could not read it from the state store", run_id)
        return
    stop = AnyEvent(shutdown)
    with run_context(sync_id=sync_id, run_id=run_id), Heartbeat(runtime, run_id, stop):
        log.info("run received")
        execute(runtime, run_id, stop)
        log.info("run done")
