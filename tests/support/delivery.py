"""Rows tests set up in a fresh state store: a working sync run, for tests that drive
the engine's delivery (``engine.writing``) with a real writer and a real snapshot store;
a source, destination and model for a sync to point at."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from reflow.config import Settings
from reflow.db.tables import Destination, Source, SourceModel, Sync, SyncRun
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize
from tests.conftest import create_pg_database, drop_pg_database


def working_run(home: Path, destination_type: str, destination_object: str,
                ) -> tuple[Runtime, int, int]:
    """(runtime, sync id, run id) of an upsert sync's run in state ``working``."""
    runtime = Runtime.from_settings(Settings(home=home, secret_key="k"))
    workspace_id = initialize(runtime.engine).workspace_id
    with runtime.session() as session:
        common = {"workspace_id": workspace_id, "credentials_encrypted": "x"}
        source = Source(name="s", type="postgres", **common)
        dest = Destination(name="d", type=destination_type, **common)
        session.add_all([source, dest])
        session.flush()
        sync = Sync(workspace_id=workspace_id, operation="upsert", source_id=source.id,
                    source_object={"type": "model", "id": 1}, destination_id=dest.id,
                    destination_object=destination_object, mappings=[])
        session.add(sync)
        session.flush()
        run = SyncRun(workspace_id=workspace_id, sync_id=sync.id, status="working")
        session.add(run)
        session.flush()
        return runtime, sync.id, run.id


def source_destination_model(session: Session, workspace_id: int,
                             ) -> tuple[Source, Destination, SourceModel]:
    """A PostgreSQL source with one model and an HTTP Request destination, flushed (no
    credentials worth decrypting): what a sync's rows point at."""
    common = {"workspace_id": workspace_id, "credentials_encrypted": "x"}
    source = Source(name="s", type="postgres", **common)
    dest = Destination(name="d", type="http_request", **common)
    session.add_all([source, dest])
    session.flush()
    model = SourceModel(workspace_id=workspace_id, source_id=source.id, name="m",
                        query="SELECT 1")
    session.add(model)
    session.flush()
    return source, dest, model


@contextmanager
def runtime_on(store: str, home: Path, prefix: str) -> Iterator[Runtime]:
    """A runtime whose state store is ``store`` (``sqlite`` under ``home``, or
    ``postgres``: a database of its own, dropped afterwards)."""
    db = create_pg_database(prefix) if store == "postgres" else None
    url = f"postgresql://postgres@127.0.0.1:5432/{db}" if db else None
    runtime = Runtime.from_settings(Settings(home=home, secret_key="k", log_level="WARNING",
                                             database_url=url))
    try:
        yield runtime
    finally:
        runtime.dispose()
        if db:
            drop_pg_database(db)
