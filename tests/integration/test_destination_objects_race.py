"""A full refresh of a destination's object cache that lists before an object is created
and stores after it must not erase that object (``POST /destinations`` answered
``objects: []``, and a created table vanished from the embedded objects). The
interleaving is forced: the refresh's listing runs the creation job before returning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.orm import Session

from reflow.config import Settings
from reflow.db.tables import Destination
from reflow.db.tables_destinations import DestinationJob
from reflow.runtime import Runtime
from reflow.services import destination_objects, destinations
from reflow.services.bootstrap import initialize
from tests.conftest import pg_credentials


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime.from_settings(Settings(home=tmp_path, secret_key="k" * 32))
    yield rt
    rt.engine.dispose()


def _job(session: Session, dest: Destination, kind: str, **extra: Any) -> int:
    job = DestinationJob(workspace_id=dest.workspace_id, destination_id=dest.id, kind=kind,
                         **extra)
    session.add(job)
    session.flush()
    return job.id


def test_a_stale_listing_keeps_an_object_created_meanwhile(
    runtime: Runtime, pg_database: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = initialize(runtime.engine)
    with runtime.session() as session:
        dest = destinations.create(session, workspace_id=result.workspace_id,
                                   vault=runtime.vault, type="postgres",
                                   credentials=pg_credentials(pg_database))
        refresh_id = _job(session, dest, "refresh_objects")
        create_id = _job(session, dest, "create_object", request={
            "object_type": "Table",
            "object_attributes": {"schema": pg_schema, "table_name": "leads"},
            "fields": [{"name": "id", "type": "bigint", "primary_key": True}]})
        dest_id = dest.id

    real_connector = destinations.connector

    def connector(destination: Destination, *, vault: Any) -> Any:
        conn = real_connector(destination, vault=vault)
        real_list = conn.list_objects

        def list_then_create() -> Any:
            listed = real_list()  # taken before the table exists ...
            destination_objects.run_job(runtime, create_id)  # ... stored after it does
            return listed

        conn.list_objects = list_then_create
        return conn

    monkeypatch.setattr(destinations, "connector", connector)
    destination_objects.run_job(runtime, refresh_id)
    monkeypatch.undo()

    with runtime.session() as session:
        jobs = [session.get(DestinationJob, i) for i in (refresh_id, create_id)]
        assert [j.status for j in jobs if j] == ["completed", "completed"]
        names = {o.full_name for o in destination_objects.cached(session, destination_id=dest_id)}
    assert f"{pg_schema}.leads" in names


def test_listing_in_the_create_transaction(
    runtime: Runtime, pg_database: str, pg_conn: psycopg.Connection, pg_schema: str
) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".accounts (id int PRIMARY KEY)')
    result = initialize(runtime.engine)
    with runtime.session() as session:
        dest = destinations.create(session, workspace_id=result.workspace_id,
                                   vault=runtime.vault, type="postgres",
                                   credentials=pg_credentials(pg_database))
        dest.last_test_succeeded = True
        destination_objects.refresh_after_change(session, runtime=runtime, destination=dest)
        names = {o.full_name for o in destination_objects.cached(session, destination_id=dest.id)}
    assert f"{pg_schema}.accounts" in names
