"""Refresh jobs left ``processing`` by a process that died: their status reads answer
failed once they are older than ``LOST_AFTER``, and the start-up sweep fails them too;
a young job is left alone. The session's ``reflow serve`` answers; the rows are
written straight into its state store, as a dead process would have left them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reflow.config import Settings
from reflow.db.tables import Source, utcnow
from reflow.db.tables_destinations import DestinationJob
from reflow.db.tables_sources import RefreshJob
from reflow.runtime import Runtime
from reflow.services.background import LOST_AFTER, LOST_MESSAGE, jobs_for, sweep_lost
from tests.api.conftest import Server
from tests.conftest import pg_credentials

OLD = utcnow() - LOST_AFTER - dt.timedelta(minutes=1)


@pytest.fixture
def state(server: Server) -> Iterator[Runtime]:
    """The server's own state store."""
    runtime = Runtime.from_settings(Settings(
        home=Path(server.env["REFLOW_HOME"]), database_url=server.env.get("REFLOW_DATABASE_URL")))
    yield runtime
    runtime.engine.dispose()


def _connections(api: httpx.Client, pg_database: str) -> tuple[int, int]:
    source = api.post("/sources", json={"connection": {
        "type": "postgres", "name": "W", "credentials": pg_credentials(pg_database)}})
    destination = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "name": "D", "credentials": pg_credentials(pg_database)}})
    assert source.status_code == 201 and destination.status_code == 201
    return source.json()["data"]["id"], destination.json()["data"]["id"]


def _add(state: Runtime, job: RefreshJob | DestinationJob) -> int:
    with state.session() as session:
        session.add(job)
        session.flush()
        return job.id


def test_status_reads_fail_jobs_a_dead_process_left(
    api: httpx.Client, state: Runtime, pg_database: str
) -> None:
    source_id, destination_id = _connections(api, pg_database)
    with state.session() as session:
        workspace_id = session.get(Source, source_id).workspace_id  # type: ignore[union-attr]
    lost_tables = _add(state, RefreshJob(workspace_id=workspace_id, source_id=source_id,
                                         kind="tables", created_at=OLD))
    young = _add(state, RefreshJob(workspace_id=workspace_id, source_id=source_id,
                                   kind="tables"))
    lost_objects = _add(state, DestinationJob(workspace_id=workspace_id,
                                              destination_id=destination_id,
                                              kind="refresh_objects", created_at=OLD))

    status = api.get(f"/sources/{source_id}/refresh_tables_status",
                     params={"refresh_key": lost_tables})
    assert (status.status_code, status.json()) == (400, {"status": "failed",
                                                         "message": LOST_MESSAGE})
    status = api.get(f"/destinations/{destination_id}/refresh_objects_status",
                     params={"refresh_key": lost_objects})
    assert (status.status_code, status.json()) == (400, {"status": "failed",
                                                         "message": LOST_MESSAGE})
    status = api.get(f"/sources/{source_id}/refresh_tables_status", params={"refresh_key": young})
    assert status.json() == {"status": "processing"}

    swept = _add(state, RefreshJob(workspace_id=workspace_id, source_id=source_id,
                                   kind="tables", created_at=OLD))
    assert sweep_lost(state) >= 1
    with state.session() as session:
        row = session.get(RefreshJob, swept)
        assert row is not None and (row.status, row.message) == ("failed", LOST_MESSAGE)
        assert session.get(RefreshJob, young).status == "processing"  # type: ignore[union-attr]


def test_background_pool_runs_any_call_until_shut_down(state: Runtime) -> None:
    pool = jobs_for(state)
    future = pool.submit_call(lambda a, b: a + b, 2, 3)
    assert future is not None and future.result(timeout=30) == 5
    pool.shutdown()
    assert pool.submit_call(lambda: 1) is None
