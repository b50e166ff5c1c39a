"""Runs failed outside the engine (by the reaper, by orphan recovery at start-up)
record the same end events and alerts as a run the engine finishes, in a real SQLite
state store."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from reflow.config import Settings
from reflow.db.tables import Destination, Source, Sync, SyncRun, Workspace, utcnow
from reflow.db.tables_hooks import WebhookEvent
from reflow.jobs.executor import LocalExecutor
from reflow.jobs.scheduler import Scheduler
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime.from_settings(Settings(home=tmp_path, secret_key="k" * 32,
                                        heartbeat_timeout=60))
    initialize(rt.engine)
    yield rt
    rt.engine.dispose()


def _working_run(runtime: Runtime, *, heartbeat: dt.datetime) -> int:
    with runtime.session() as session:
        workspace_id = session.scalar(select(Workspace.id))
        common = {"workspace_id": workspace_id, "type": "postgres", "credentials_encrypted": "x"}
        source, destination = Source(name="s", **common), Destination(name="d", **common)
        session.add_all([source, destination])
        session.flush()
        sync = Sync(workspace_id=workspace_id, operation="upsert", source_id=source.id,
                    source_object={"type": "table", "table_name": "t"},
                    destination_id=destination.id, destination_object="t", mappings=[],
                    alert_attributes=[{"type": "FailureAlertConfiguration"}])
        session.add(sync)
        session.flush()
        run = SyncRun(workspace_id=workspace_id, sync_id=sync.id, status="working",
                      started_at=heartbeat, heartbeat_at=heartbeat)
        session.add(run)
        session.flush()
        return run.id


def _events(runtime: Runtime, run_id: int) -> dict[str, dict[str, object]]:
    with runtime.session() as session:
        rows = session.scalars(select(WebhookEvent).where(WebhookEvent.sync_run_id == run_id))
        return {row.event: json.loads(row.body) for row in rows}


def _assert_failure_announced(runtime: Runtime, run_id: int) -> None:
    events = _events(runtime, run_id)
    assert set(events) == {"sync.completed", "sync.failed", "sync.alert.raised"}
    assert events["sync.completed"]["status"] == "emergency"
    assert events["sync.alert.raised"]["alert_type"] == "FailureAlertConfiguration"


def test_a_run_the_reaper_fails_announces_its_failure(runtime: Runtime) -> None:
    now = utcnow()
    run_id = _working_run(runtime, heartbeat=now - dt.timedelta(minutes=5))
    assert Scheduler(runtime, clock=lambda: now, enqueue=lambda _: None).reap_lost(now) == 1
    _assert_failure_announced(runtime, run_id)


def test_an_orphan_failed_at_start_up_announces_its_failure(runtime: Runtime) -> None:
    run_id = _working_run(runtime, heartbeat=utcnow())
    executor = LocalExecutor(runtime, workers=1)
    try:
        executor.start()
    finally:
        executor.shutdown()
    with runtime.session() as session:
        assert session.get(SyncRun, run_id).status == "failed"  # type: ignore[union-attr]
    _assert_failure_announced(runtime, run_id)
