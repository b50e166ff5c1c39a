"""Ids are never reused after a delete (AUTOINCREMENT on SQLite, sequences on
PostgreSQL), also in a store created before migration 0900_ids_never_reused: the upgrade
keeps every row, every foreign key and its ON DELETE action."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from reflow.db import migrate
from reflow.db.engine import make_engine
from reflow.db.tables import (
    Destination,
    Organization,
    Source,
    Sync,
    SyncRun,
    SyncRunRecord,
    Workspace,
)
from tests.conftest import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
        yield eng
        eng.dispose()
        return
    name = create_pg_database("reflow_ids")
    eng = make_engine(f"postgresql://postgres@127.0.0.1:5432/{name}")
    yield eng
    eng.dispose()
    drop_pg_database(name)


def _upgrade_to(engine: Engine, revision: str) -> None:
    config = migrate.alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _sync(session: Session, workspace: Workspace, source: Source, dest: Destination) -> Sync:
    sync = Sync(workspace_id=workspace.id, operation="upsert", source_id=source.id,
                source_object={"type": "table"}, destination_id=dest.id,
                destination_object="t", mappings=[])
    session.add(sync)
    session.flush()
    return sync


def _run(session: Session, sync: Sync) -> SyncRun:
    run = SyncRun(workspace_id=sync.workspace_id, sync_id=sync.id)
    session.add(run)
    session.flush()
    session.add(SyncRunRecord(run_id=run.id, status="invalid"))
    session.flush()
    return run


def _seed(engine: Engine) -> dict[str, int]:
    """A store with syncs, runs and records, where the newest sync was deleted."""
    with Session(engine) as session, session.begin():
        org = Organization(name="o")
        session.add(org)
        session.flush()
        ws = Workspace(organization_id=org.id, name="w")
        session.add(ws)
        session.flush()
        source = Source(workspace_id=ws.id, name="s", type="postgres", credentials_encrypted="x")
        dest = Destination(workspace_id=ws.id, name="d", type="postgres", credentials_encrypted="x")
        session.add_all([source, dest])
        session.flush()
        kept = [_sync(session, ws, source, dest) for _ in range(3)]
        runs = [_run(session, s) for s in kept for _ in range(2)]
        session.delete(kept[1])  # a deleted row in the middle
        return {"workspace": ws.id, "source": source.id, "dest": dest.id,
                "kept": kept[2].id, "max_run": runs[-1].id}


def _new_sync_and_run(engine: Engine, ids: dict[str, int]) -> tuple[int, int]:
    with Session(engine) as session, session.begin():
        ws, source, dest = (session.get(Workspace, ids["workspace"]),
                            session.get(Source, ids["source"]),
                            session.get(Destination, ids["dest"]))
        assert ws and source and dest
        sync = _sync(session, ws, source, dest)
        return sync.id, _run(session, sync).id


def _delete_sync(engine: Engine, sync_id: int) -> None:
    with Session(engine) as session, session.begin():
        session.delete(session.get(Sync, sync_id))


def test_a_deleted_syncs_ids_go_to_nobody_after_the_upgrade(engine: Engine) -> None:
    _upgrade_to(engine, "0800_installation")
    ids = _seed(engine)
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    with engine.connect() as conn:  # rows and their foreign keys survived the recreation
        assert conn.execute(text("SELECT count(*) FROM syncs")).scalar_one() == 2
        assert conn.execute(text("SELECT count(*) FROM sync_runs")).scalar_one() == 4
        assert conn.execute(text("SELECT count(*) FROM sync_run_records")).scalar_one() == 4
    # The newest sync is deleted, its runs and their records cascade as before.
    _delete_sync(engine, ids["kept"])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sync_runs")).scalar_one() == 2
        assert conn.execute(text("SELECT count(*) FROM sync_run_records")).scalar_one() == 2
    sync_id, run_id = _new_sync_and_run(engine, ids)
    assert sync_id > ids["kept"] and run_id > ids["max_run"]
    # And again from the new top: deleted ids stay retired.
    _delete_sync(engine, sync_id)
    again, again_run = _new_sync_and_run(engine, ids)
    assert again > sync_id and again_run > run_id


def test_a_fresh_store_never_reuses_ids(engine: Engine) -> None:
    migrate.upgrade(engine)
    ids = _seed(engine)
    _delete_sync(engine, ids["kept"])
    sync_id, run_id = _new_sync_and_run(engine, ids)
    assert sync_id > ids["kept"] and run_id > ids["max_run"]
