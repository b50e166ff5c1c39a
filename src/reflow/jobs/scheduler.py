"""The scheduler: one loop that turns schedules into runs and keeps runs honest.

Each tick it

1. triggers the due slot of every scheduled sync (``services.schedules.due_runs``), claiming
   the slot with a conditional update on ``sync_schedule_states`` (and, behind it, a
   unique index on ``(sync_id, scheduled_execution_time)``), so two schedulers started by
   mistake still create one run per slot;
2. reaps lost runs: a ``working`` run whose heartbeat is older than
   ``heartbeat_timeout`` is failed with "worker lost" (not requeued: part of it may have
   been delivered; the snapshot holds exactly what was acknowledged, so the next run
   resends the rest);
3. re-sends queued runs nobody claimed within ``requeue_after`` (a broker that restarted
   without persistence lost the message; the database is the truth, and a duplicate
   message is harmless because claiming is a conditional update).

The clock is injected, so tests drive it without sleeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reflow.db.engine import after_commit
from reflow.db.tables import Sync, SyncRun, utcnow
from reflow.db.tables_jobs import SyncScheduleState
from reflow.runtime import Runtime
from reflow.services import events
from reflow.services.schedules import ScheduleSpec, due_runs, parse_schedule_input

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


@dataclass
class TickResult:
    triggered: list[int] = field(default_factory=list)  # run ids created (queued or skipped)
    reaped: int = 0
    requeued: list[int] = field(default_factory=list)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands timestamps back naive; every stored one is UTC."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def embedded(runtime: Runtime) -> bool:
    """Whether ``reflow serve`` runs the scheduler itself: by default only the embedded
    default (local executor) does; production runs one ``reflow scheduler``."""
    settings = runtime.settings
    if settings.embedded_scheduler is not None:
        return settings.embedded_scheduler
    return settings.executor == "local"


def fingerprint(mode: dict[str, Any] | None, paused: bool) -> str:
    """What the reference point depends on: the schedule and the paused flag. A change
    of either restarts the schedule from the change, so none owes a missed slot."""
    schedule = ((mode or {}).get("triggers") or {}).get("schedule")
    data = json.dumps({"schedule": schedule, "paused": paused}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


PRUNE_EVERY = dt.timedelta(hours=1)


class Scheduler:
    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Clock = utcnow,
        enqueue: Callable[[int], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self._enqueue = runtime.enqueue if enqueue is None else enqueue
        settings = runtime.settings
        self.interval = settings.scheduler_interval
        self.heartbeat_timeout = dt.timedelta(seconds=settings.heartbeat_timeout)
        self.requeue_after = dt.timedelta(seconds=settings.requeue_after)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at: dt.datetime | None = None

    # --- the loop -----------------------------------------------------------------------

    def tick(self) -> TickResult:
        now = self.clock()
        result = TickResult(
            triggered=self.schedule_due(now),
            reaped=self.reap_lost(now),
            requeued=self.requeue_stale(now),
        )
        self.prune_records(now)
        return result

    def prune_records(self, now: dt.datetime) -> None:
        """Record retention (jobs/retention.py), at most once an hour."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        from reflow.jobs.retention import prune

        prune(self.runtime, now)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        log.info("scheduler started (tick every %ss)", self.interval)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # one bad tick (database restart) must not end the loop
                log.exception("scheduler tick failed")
            stop.wait(self.interval)
        log.info("scheduler stopped")

    def start(self) -> None:
        """Run the loop on a daemon thread (the embedded default inside ``reflow serve``)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="reflow-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- 1. schedules -------------------------------------------------------------------

    def schedule_due(self, now: dt.datetime) -> list[int]:
        with self.runtime.session() as session:
            syncs = session.execute(
                select(Sync.id, Sync.mode, Sync.paused, Sync.created_at, Sync.updated_at)
            ).all()
            seen = dict(session.execute(
                select(SyncScheduleState.sync_id, SyncScheduleState.last_scheduled_at)
            ).all())
            prints = dict(session.execute(
                select(SyncScheduleState.sync_id, SyncScheduleState.fingerprint)
            ).all())
        created: list[int] = []
        for row in syncs:
            if not _needs_work(row, seen.get(row.id), prints.get(row.id), now):
                continue
            try:
                run_id = self._schedule_one(row, now)
            except Exception:
                log.exception("scheduling sync %s failed", row.id)
                continue
            if run_id is not None:
                created.append(run_id)
        return created

    def _schedule_one(self, row: Row[Any], now: dt.datetime) -> int | None:
        spec = _spec(row)
        if spec is None:
            return None
        fp = fingerprint(row.mode, row.paused)
        with self.runtime.session() as session:
            state = self._current_state(session, row, fp)
            if state is None or row.paused:
                return None
            slot = due_runs(spec, as_utc(state.last_scheduled_at), now)
            if slot is None or not _claim(session, state, slot):
                return None
            return self._trigger(session, row.id, spec, slot)

    def _current_state(self, session: Session, row: Row[Any], fp: str) -> SyncScheduleState | None:
        """The state to schedule from, created or reset when the schedule changed;
        None when another scheduler is doing the same right now."""
        state = session.get(SyncScheduleState, row.id)
        if state is None:
            reference = as_utc(row.created_at)
            state = SyncScheduleState(sync_id=row.id, last_scheduled_at=reference,
                                      fingerprint=fp, version=0)
            try:
                with session.begin_nested():
                    session.add(state)
            except IntegrityError:
                return None
            return state
        if state.fingerprint != fp:
            changed = session.execute(
                update(SyncScheduleState)
                .where(SyncScheduleState.sync_id == row.id,
                       SyncScheduleState.version == state.version)
                .values(fingerprint=fp, last_scheduled_at=as_utc(row.updated_at),
                        version=state.version + 1)
            ).rowcount  # type: ignore[attr-defined]  # DML returns a CursorResult
            if not changed:
                return None
            session.refresh(state)
        return state

    def _trigger(
        self, session: Session, sync_id: int, spec: ScheduleSpec, slot: dt.datetime
    ) -> int:
        from reflow.services import runs

        sync = session.get(Sync, sync_id)
        assert sync is not None
        reason = {
            "ui_tag": "Schedule",
            "ui_detail": f"Scheduled ({spec.schedule.frequency}) for {slot.isoformat()}",
        }
        run = runs.trigger(session, sync=sync, reason=reason, scheduled_for=slot)
        if run.status == "queued":
            run.enqueued_at = utcnow()
            after_commit(session, self._safe_enqueue(run.id))
        log.info("sync %s: %s run %s for slot %s", sync_id, run.status, run.id, slot.isoformat())
        return run.id

    def _safe_enqueue(self, run_id: int) -> Callable[[], None]:
        def enqueue() -> None:
            try:
                self._enqueue(run_id)
            except Exception:  # the run is queued in the database; the requeue sweep re-sends
                log.warning("run %s: hand-off to the executor failed", run_id, exc_info=True)

        return enqueue

    # --- 2. lost workers ----------------------------------------------------------------

    def reap_lost(self, now: dt.datetime) -> int:
        cutoff = now - self.heartbeat_timeout
        seconds = int(self.heartbeat_timeout.total_seconds())
        last_sign = func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at)
        with self.runtime.session() as session:
            reaped = session.scalars(
                update(SyncRun)
                .where(SyncRun.status == "working", last_sign < cutoff)
                .values(status="failed", completed_at=now, current_step=None,
                        error_code="WORKER_LOST",
                        error_message=f"the worker running this sync run was lost (no heartbeat "
                                      f"for {seconds}s); the next run resends what was not "
                                      "delivered")
                .returning(SyncRun.id)
                .execution_options(synchronize_session=False)
            ).all()
            for run_id in reaped:  # the lost worker never reaches the engine's finish
                after_commit(session, partial(events.run_finished, self.runtime, run_id))
        if reaped:
            log.warning("failed %s run(s) whose worker was lost: %s", len(reaped), reaped)
        return len(reaped)

    # --- 3. lost messages ---------------------------------------------------------------

    def requeue_stale(self, now: dt.datetime) -> list[int]:
        cutoff = now - self.requeue_after
        last_sent = func.coalesce(SyncRun.enqueued_at, SyncRun.created_at)
        with self.runtime.session() as session:
            stale = session.scalars(
                select(SyncRun.id).where(SyncRun.status == "queued", last_sent < cutoff)
            ).all()
            resent: list[int] = []
            for run_id in stale:
                # Conditional: a second scheduler (or a claim) in between wins, not both.
                if session.execute(
                    update(SyncRun)
                    .where(SyncRun.id == run_id, SyncRun.status == "queued", last_sent < cutoff)
                    .values(enqueued_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount:  # type: ignore[attr-defined]  # DML: a CursorResult
                    resent.append(run_id)
                    after_commit(session, self._safe_enqueue(run_id))
        if resent:
            log.warning("re-sent %s queued run(s) nobody claimed: %s", len(resent), resent)
        return resent


def _needs_work(
    row: Row[Any], last: dt.datetime | None, stored_fp: str | None, now: dt.datetime
) -> bool:
    """A cheap pre-check without a transaction: most syncs, most ticks, have nothing due."""
    if last is None or stored_fp != fingerprint(row.mode, row.paused):
        return True
    spec = _spec(row)
    return not row.paused and spec is not None and due_runs(spec, as_utc(last), now) is not None


def _spec(row: Row[Any]) -> ScheduleSpec | None:
    try:
        return parse_schedule_input({"mode": row.mode}) if row.mode else ScheduleSpec()
    except ValueError:
        log.warning("sync %s has an unreadable schedule; not scheduling it", row.id)
        return None


def _claim(session: Session, state: SyncScheduleState, slot: dt.datetime) -> bool:
    claimed = session.execute(
        update(SyncScheduleState)
        .where(SyncScheduleState.sync_id == state.sync_id,
               SyncScheduleState.version == state.version)
        .values(last_scheduled_at=slot, version=state.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]  # DML returns a CursorResult
    return claimed == 1
