"""The scheduler against a real state store with a fake clock: every frequency and
cron shape (month, leap-day and year ends), pauses and schedule changes, two schedulers
at once, the reaper, the requeue sweep, sync sequences, heartbeats and metrics."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from reflow.config import Settings
from reflow.db.tables import Destination, Source, Sync, SyncRun, Workspace
from reflow.jobs import progress
from reflow.jobs.heartbeat import Heartbeat
from reflow.jobs.metrics import render
from reflow.jobs.scheduler import Scheduler, as_utc
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize
from tests.conftest import create_pg_database, drop_pg_database


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Enqueued(list[int]):
    def __call__(self, run_id: int) -> None:
        self.append(run_id)


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    rt = Runtime.from_settings(Settings(home=tmp_path, heartbeat_timeout=60, requeue_after=300))
    initialize(rt.engine)
    return rt


@pytest.fixture
def pg_runtime(tmp_path: Path) -> Iterator[Runtime]:
    name = create_pg_database("reflow_sched")
    rt = Runtime.from_settings(Settings(
        home=tmp_path, database_url=f"postgresql://postgres@127.0.0.1:5432/{name}"))
    initialize(rt.engine)
    yield rt
    rt.engine.dispose()
    drop_pg_database(name)


def make_sync(
    runtime: Runtime, schedule: dict[str, Any] | None = None, *, created: dt.datetime,
    paused: bool = False, sequence_of: int | None = None,
) -> int:
    triggers: dict[str, Any] = {"schedule": schedule or {"frequency": "never"}}
    if sequence_of is not None:
        triggers["sync_sequence"] = {"sync_id": sequence_of}
    with runtime.session() as session:
        workspace_id = session.scalar(select(Workspace.id))
        assert workspace_id is not None
        common = {"workspace_id": workspace_id, "type": "postgres", "credentials_encrypted": "x"}
        source = Source(name="s", **common)
        destination = Destination(name="d", **common)
        session.add_all([source, destination])
        session.flush()
        sync = Sync(
            workspace_id=workspace_id, operation="upsert", source_id=source.id,
            source_object={"type": "table", "table_name": "t"}, destination_id=destination.id,
            destination_object="t", mappings=[], paused=paused,
            mode={"type": "triggered", "triggers": triggers},
            created_at=created, updated_at=created,
        )
        session.add(sync)
        session.flush()
        return sync.id


def runs_of(runtime: Runtime, sync_id: int) -> list[SyncRun]:
    with runtime.session() as session:
        return list(session.scalars(
            select(SyncRun).where(SyncRun.sync_id == sync_id).order_by(SyncRun.id)))


def complete_all(runtime: Runtime) -> None:
    with runtime.session() as session:
        session.execute(update(SyncRun).where(SyncRun.status == "queued")
                        .values(status="completed"))


# Each case: a schedule, when the sync was created, and ticks (now -> slot due or None).
Ticks = list[tuple[dt.datetime, dt.datetime | None]]
CASES: dict[str, tuple[dict[str, Any], dt.datetime, Ticks]] = {
    "quarter_hourly": (
        {"frequency": "quarter_hourly", "minute": 50}, utc(2026, 3, 1, 12, 0),
        [(utc(2026, 3, 1, 12, 4), None), (utc(2026, 3, 1, 12, 5), utc(2026, 3, 1, 12, 5)),
         (utc(2026, 3, 1, 12, 19, 59), None), (utc(2026, 3, 1, 12, 20), utc(2026, 3, 1, 12, 20))],
    ),
    "hourly_over_year_end": (
        {"frequency": "hourly", "minute": 59}, utc(2026, 12, 31, 23, 0),
        [(utc(2026, 12, 31, 23, 58), None), (utc(2026, 12, 31, 23, 59), utc(2026, 12, 31, 23, 59)),
         (utc(2027, 1, 1, 0, 58), None), (utc(2027, 1, 1, 0, 59), utc(2027, 1, 1, 0, 59))],
    ),
    "daily_hour_24_at_february_end": (
        {"frequency": "daily", "hour": 24, "minute": 0}, utc(2027, 2, 28, 10, 0),
        [(utc(2027, 2, 28, 23, 59), None), (utc(2027, 3, 1, 0, 0), utc(2027, 3, 1, 0, 0)),
         (utc(2027, 3, 1, 23, 0), None)],
    ),
    "daily_leap_day": (
        {"frequency": "daily", "hour": 6, "minute": 15}, utc(2028, 2, 28, 7, 0),
        [(utc(2028, 2, 29, 6, 14), None), (utc(2028, 2, 29, 6, 15), utc(2028, 2, 29, 6, 15)),
         (utc(2028, 3, 1, 6, 15), utc(2028, 3, 1, 6, 15))],
    ),
    "weekly_over_month_end": (
        {"frequency": "weekly", "day": "Sunday", "hour": 23, "minute": 0}, utc(2026, 11, 25, 0, 0),
        [(utc(2026, 11, 29, 22, 59), None), (utc(2026, 11, 29, 23, 0), utc(2026, 11, 29, 23, 0)),
         (utc(2026, 12, 6, 22, 0), None), (utc(2026, 12, 6, 23, 30), utc(2026, 12, 6, 23, 0))],
    ),
    "cron_first_of_month": (
        {"frequency": "expression", "cron_expression": "0 0 1 * *"}, utc(2027, 1, 15),
        [(utc(2027, 1, 31, 23, 59), None), (utc(2027, 2, 1, 0, 0), utc(2027, 2, 1)),
         (utc(2027, 2, 28, 23, 59), None), (utc(2027, 3, 1, 0, 0, 30), utc(2027, 3, 1))],
    ),
    "cron_year_end": (
        {"frequency": "expression", "cron_expression": "59 23 31 12 *"}, utc(2026, 6, 1),
        [(utc(2026, 12, 31, 23, 58), None), (utc(2026, 12, 31, 23, 59), utc(2026, 12, 31, 23, 59)),
         (utc(2027, 6, 1), None), (utc(2027, 12, 31, 23, 59, 59), utc(2027, 12, 31, 23, 59))],
    ),
    "cron_leap_day": (
        {"frequency": "expression", "cron_expression": "0 12 29 2 *"}, utc(2027, 3, 1),
        [(utc(2028, 2, 28, 12, 0), None), (utc(2028, 2, 29, 12, 0), utc(2028, 2, 29, 12, 0))],
    ),
    "continuous": (
        {"frequency": "continuous"}, utc(2026, 5, 1, 12, 0),
        [(utc(2026, 5, 1, 12, 0, 59), None), (utc(2026, 5, 1, 12, 1), utc(2026, 5, 1, 12, 1)),
         (utc(2026, 5, 1, 12, 3, 30), utc(2026, 5, 1, 12, 3))],
    ),
    "catch_up_is_one_run": (
        {"frequency": "daily", "hour": 2}, utc(2026, 5, 1, 12, 0),
        [(utc(2026, 5, 5, 9, 0), utc(2026, 5, 5, 2, 0)), (utc(2026, 5, 5, 23, 59), None)],
    ),
    "never": ({"frequency": "never"}, utc(2026, 5, 1), [(utc(2027, 5, 1), None)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_frequency_triggers_exactly_its_slots(runtime: Runtime, case: str) -> None:
    schedule, created, ticks = CASES[case]
    sync_id = make_sync(runtime, schedule, created=created)
    clock, enqueued = FakeClock(created), Enqueued()
    scheduler = Scheduler(runtime, clock=clock, enqueue=enqueued)
    expected: list[dt.datetime] = []
    for now, slot in ticks:
        clock.now = now
        created_ids = scheduler.schedule_due(now)
        assert len(created_ids) == (slot is not None), (case, now)
        if slot is not None:
            expected.append(slot)
        complete_all(runtime)
    runs = runs_of(runtime, sync_id)
    assert [as_utc(r.scheduled_execution_time) for r in runs] == expected  # type: ignore[arg-type]
    assert all(r.sync_trigger_reason["ui_tag"] == "Schedule" for r in runs)  # type: ignore[index]
    assert enqueued == [r.id for r in runs]


def test_due_run_while_previous_works_is_skipped(runtime: Runtime) -> None:
    sync_id = make_sync(runtime, {"frequency": "hourly"}, created=utc(2026, 1, 1))
    scheduler = Scheduler(runtime, clock=FakeClock(utc(2026, 1, 1)), enqueue=Enqueued())
    (first,) = scheduler.schedule_due(utc(2026, 1, 1, 1, 0))
    with runtime.session() as session:
        session.execute(update(SyncRun).where(SyncRun.id == first).values(status="working"))
    (second,) = scheduler.schedule_due(utc(2026, 1, 1, 2, 0))
    run = runs_of(runtime, sync_id)[1]
    assert (run.id, run.status) == (second, "skipped")
    assert as_utc(run.scheduled_execution_time) == utc(2026, 1, 1, 2, 0)  # type: ignore[arg-type]


def test_pause_and_schedule_change_owe_no_missed_slot(runtime: Runtime) -> None:
    sync_id = make_sync(runtime, {"frequency": "daily", "hour": 8}, created=utc(2026, 1, 1),
                        paused=True)
    scheduler = Scheduler(runtime, clock=FakeClock(utc(2026, 1, 1)), enqueue=Enqueued())
    assert scheduler.schedule_due(utc(2026, 1, 3, 9, 0)) == []
    with runtime.session() as session:  # unpaused at 10:00, after the 08:00 slot
        session.execute(update(Sync).where(Sync.id == sync_id)
                        .values(paused=False, updated_at=utc(2026, 1, 3, 10, 0)))
    assert scheduler.schedule_due(utc(2026, 1, 3, 10, 0, 5)) == []
    assert len(scheduler.schedule_due(utc(2026, 1, 4, 8, 0))) == 1
    complete_all(runtime)
    new_mode = {"type": "triggered", "triggers": {"schedule": {"frequency": "hourly"}}}
    with runtime.session() as session:  # changed at 09:30: the 09:00 slot is not owed
        session.execute(update(Sync).where(Sync.id == sync_id)
                        .values(mode=new_mode, updated_at=utc(2026, 1, 4, 9, 30)))
    assert scheduler.schedule_due(utc(2026, 1, 4, 9, 40)) == []
    assert len(scheduler.schedule_due(utc(2026, 1, 4, 10, 0))) == 1
    assert len(runs_of(runtime, sync_id)) == 2


def test_two_schedulers_create_one_run_per_slot(pg_runtime: Runtime) -> None:
    syncs = [make_sync(pg_runtime, {"frequency": "quarter_hourly"}, created=utc(2026, 1, 1))
             for _ in range(8)]
    slots = [utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 45)]
    schedulers = [Scheduler(pg_runtime, clock=FakeClock(slots[0]), enqueue=Enqueued())
                  for _ in range(4)]
    for slot in slots:
        barrier = threading.Barrier(len(schedulers))

        def tick(scheduler: Scheduler, at: dt.datetime = slot,
                 start: threading.Barrier = barrier) -> None:
            start.wait()
            for _ in range(3):
                scheduler.schedule_due(at)

        threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        complete_all(pg_runtime)
    for sync_id in syncs:
        times = [as_utc(r.scheduled_execution_time) for r in runs_of(pg_runtime, sync_id)]  # type: ignore[arg-type]
        assert times == slots
    assert sum(len(s._enqueue) for s in schedulers) == len(syncs) * len(slots)  # type: ignore[arg-type]


def _run(runtime: Runtime, sync_id: int, **values: Any) -> int:
    with runtime.session() as session:
        workspace_id = session.scalar(select(Workspace.id))
        run = SyncRun(workspace_id=workspace_id, sync_id=sync_id, **values)
        session.add(run)
        session.flush()
        return run.id


def test_reaper_fails_runs_whose_worker_was_lost(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    sync_id = make_sync(runtime, created=now)
    lost = _run(runtime, sync_id, status="working", started_at=now - dt.timedelta(minutes=5),
                heartbeat_at=now - dt.timedelta(seconds=61))
    other = make_sync(runtime, created=now)
    alive = _run(runtime, other, status="working", started_at=now - dt.timedelta(minutes=5),
                 heartbeat_at=now - dt.timedelta(seconds=5))
    assert Scheduler(runtime, clock=lambda: now, enqueue=Enqueued()).reap_lost(now) == 1
    with runtime.session() as session:
        reaped, kept = session.get(SyncRun, lost), session.get(SyncRun, alive)
        assert reaped is not None and kept is not None
        assert (reaped.status, reaped.error_code) == ("failed", "WORKER_LOST")
        assert "worker" in (reaped.error_message or "") and reaped.completed_at is not None
        assert kept.status == "working"


def test_queued_runs_nobody_claimed_are_sent_again_once(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    sync_id = make_sync(runtime, created=now)
    stale = _run(runtime, sync_id, created_at=now - dt.timedelta(minutes=6))
    fresh = _run(runtime, make_sync(runtime, created=now), created_at=now - dt.timedelta(minutes=1))
    enqueued = Enqueued()
    scheduler = Scheduler(runtime, clock=lambda: now, enqueue=enqueued)
    assert scheduler.requeue_stale(now) == [stale]
    assert scheduler.requeue_stale(now + dt.timedelta(seconds=5)) == []
    assert enqueued == [stale] and fresh not in enqueued
    assert scheduler.requeue_stale(now + dt.timedelta(minutes=6)) == [stale, fresh]


def test_completed_run_triggers_its_sequence_followers(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    enqueued = Enqueued()
    runtime.executor = type("Fake", (), {"submit": staticmethod(enqueued)})()  # type: ignore[assignment]
    parent = make_sync(runtime, created=now)
    follower = make_sync(runtime, created=now, sequence_of=parent)
    make_sync(runtime, created=now, sequence_of=parent, paused=True)
    failed_parent = make_sync(runtime, created=now)
    make_sync(runtime, created=now, sequence_of=failed_parent)
    done = _run(runtime, parent, status="working")
    broken = _run(runtime, failed_parent, status="working")
    progress.finish(runtime, done, status="completed")
    progress.finish(runtime, broken, status="failed")
    (run,) = runs_of(runtime, follower)
    assert run.status == "queued" and enqueued == [run.id]
    assert run.sync_trigger_reason["ui_tag"] == "Sync Sequence"  # type: ignore[index]


def test_claim_never_overlaps_runs_of_one_sync(runtime: Runtime) -> None:
    sync_id = make_sync(runtime, created=dt.datetime.now(dt.UTC))
    first, second = _run(runtime, sync_id), _run(runtime, sync_id)
    assert progress.claim(runtime, first) is True
    assert progress.claim(runtime, first) is False
    assert progress.claim(runtime, second) is False
    assert [r.status for r in runs_of(runtime, sync_id)] == ["working", "skipped"]


def test_heartbeat_stamps_and_notices_a_reaped_run(runtime: Runtime) -> None:
    runtime.settings.heartbeat_interval = 0.05
    sync_id = make_sync(runtime, created=dt.datetime.now(dt.UTC))
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    run_id = _run(runtime, sync_id, status="working", heartbeat_at=old)
    lost = threading.Event()
    with Heartbeat(runtime, run_id, lost) as beat:
        beat.beat()
        assert as_utc(runs_of(runtime, sync_id)[0].heartbeat_at) > old  # type: ignore[arg-type]
        assert not lost.is_set()
        with runtime.session() as session:
            session.execute(update(SyncRun).values(status="failed"))
        assert lost.wait(10)


def test_metrics_report_runs_records_durations_and_lag(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    sync_id = make_sync(runtime, created=now)
    _run(runtime, sync_id, status="completed", started_at=now - dt.timedelta(seconds=10),
         completed_at=now, records_updated=7, records_failed=2, source_record_invalids=1)
    _run(runtime, sync_id, created_at=now - dt.timedelta(seconds=120))
    text = render(runtime).decode()
    assert 'reflow_sync_runs{status="completed"} 1.0' in text
    assert 'reflow_sync_runs{status="queued"} 1.0' in text
    assert 'reflow_records_total{outcome="updated"} 7.0' in text
    assert 'reflow_records_total{outcome="failed"} 2.0' in text
    assert 'reflow_sync_run_duration_seconds_bucket{le="5.0"} 0.0' in text
    assert 'reflow_sync_run_duration_seconds_bucket{le="15.0"} 1.0' in text
    lag = next(line for line in text.splitlines() if line.startswith("reflow_queue_lag_seconds "))
    assert float(lag.split()[1]) >= 120
