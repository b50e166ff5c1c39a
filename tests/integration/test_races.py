"""Races between concurrent requests against real state stores (SQLite and
PostgreSQL): two threads, each with its own session, are held just before the insert
that would duplicate work, so both have done their check when the first one writes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text, update
from sqlalchemy.orm import Session

from reflow.config import Settings
from reflow.db.tables import ApiToken, Destination, Source, Sync, SyncRun, Workspace
from reflow.db.tables_org import User
from reflow.runtime import Runtime
from reflow.services import runs
from reflow.services.auth import Principal
from reflow.services.bootstrap import initialize
from reflow.services.organization import INITIAL_OWNER_EMAIL, acting_user
from tests.conftest import create_pg_database, drop_pg_database

#: How long a thread at the gate waits for the other on SQLite, where a writer blocked
#: by the single-writer lock cannot be observed from outside.
SQLITE_GATE_WAIT = 3.0


@pytest.fixture(params=["sqlite", "postgres"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    name = None
    settings = Settings(home=tmp_path, secret_key="k" * 32)
    if request.param == "postgres":
        name = create_pg_database("reflow_races")
        settings = Settings(home=tmp_path, secret_key="k" * 32,
                            database_url=f"postgresql://postgres@127.0.0.1:5432/{name}")
    rt = Runtime.from_settings(settings)
    initialize(rt.engine)
    yield rt
    rt.engine.dispose()
    if name:
        drop_pg_database(name)


class Gate:
    """Holds a thread before ``statement_prefix`` until the other thread reaches it too,
    or is waiting for a lock the first one holds (PostgreSQL: seen in pg_stat_activity;
    SQLite: after ``SQLITE_GATE_WAIT``)."""

    def __init__(self, engine: Engine, statement_prefix: str) -> None:
        self.engine = engine
        self.prefix = statement_prefix.upper()
        self.arrived: dict[int, int | None] = {}  # thread id -> backend pid
        self.pids: dict[int, int] = {}
        self.cond = threading.Condition()

    def register(self, session: Session) -> None:
        pid = None
        if self.engine.dialect.name == "postgresql":
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with self.cond:
            self.pids[threading.get_ident()] = pid or 0

    def hook(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(self.prefix):
            return
        me = threading.get_ident()
        if me not in self.pids:
            return
        with self.cond:
            self.arrived[me] = self.pids[me]
            self.cond.notify_all()
        self._wait_for_other(me)

    def _wait_for_other(self, me: int) -> None:
        others = [t for t in self.pids if t != me]
        for _ in range(300 if self.engine.dialect.name == "postgresql" else 1):
            with self.cond:
                if all(t in self.arrived for t in others):
                    return
                wait = 0.1 if self.engine.dialect.name == "postgresql" else SQLITE_GATE_WAIT
                self.cond.wait(wait)
                if all(t in self.arrived for t in others):
                    return
            if self._others_wait_for_locks(others):
                return

    def _others_wait_for_locks(self, others: list[int]) -> bool:
        if self.engine.dialect.name != "postgresql":
            return False
        with self.engine.connect() as conn:
            waiting = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ).scalars().all()
        return all(self.pids[t] in waiting for t in others)


def race(runtime: Runtime, prefix: str, work: Callable[[Session], Any]) -> list[Any]:
    """Run ``work`` on two threads at once, each in its own session and transaction."""
    gate = Gate(runtime.engine, prefix)
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def one() -> None:
        try:
            with Session(runtime.engine) as session:
                gate.register(session)
                start.wait(timeout=30)
                results.append(work(session))
                session.commit()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    event.listen(runtime.engine, "before_cursor_execute", gate.hook)
    try:
        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", gate.hook)
    assert not errors, errors
    return results


def _sync(runtime: Runtime) -> int:
    with runtime.session() as session:
        workspace_id = session.scalar(select(Workspace.id))
        common = {"workspace_id": workspace_id, "type": "postgres", "credentials_encrypted": "x"}
        source, destination = Source(name="s", **common), Destination(name="d", **common)
        session.add_all([source, destination])
        session.flush()
        sync = Sync(workspace_id=workspace_id, operation="upsert", source_id=source.id,
                    source_object={"type": "table", "table_name": "t"},
                    destination_id=destination.id, destination_object="t", mappings=[])
        session.add(sync)
        session.flush()
        return sync.id


def test_concurrent_triggers_queue_exactly_one_run(runtime: Runtime) -> None:
    sync_id = _sync(runtime)

    def trigger(session: Session) -> str:
        sync = session.get(Sync, sync_id)
        assert sync is not None
        return runs.trigger(session, sync=sync).status

    statuses = race(runtime, "INSERT INTO sync_runs", trigger)
    assert sorted(statuses) == ["queued", "skipped"]
    with runtime.session() as session:
        stored = session.scalars(select(SyncRun.status).where(SyncRun.sync_id == sync_id)).all()
    assert sorted(stored) == ["queued", "skipped"]


def test_first_use_of_a_userless_organization_token_creates_one_owner(
    runtime: Runtime,
) -> None:
    """A store initialized before ``reflow init`` created the owner: its organization
    token has no user, and two first requests at once both go to create the owner."""
    with runtime.session() as session:
        token = session.scalars(select(ApiToken).where(ApiToken.kind == "organization")).one()
        org_id = token.organization_id
        session.execute(update(ApiToken).values(user_id=None))
        session.execute(User.__table__.delete())
    principal = Principal("organization", org_id, None, None)

    users = race(runtime, "INSERT INTO users",
                 lambda session: acting_user(session, principal=principal).id)
    assert users[0] == users[1]
    with runtime.session() as session:
        owners = session.scalars(select(User)).all()
        assert [(u.id, u.email, u.role) for u in owners] == [(users[0], INITIAL_OWNER_EMAIL,
                                                             "admin")]
        assert session.scalar(select(ApiToken.user_id).where(ApiToken.id == token.id)) == users[0]
