"""The polled reads dispatched past FastAPI's router (``api/polled.py``) answer byte for
byte what FastAPI answers, on both state stores: the same status, headers and body for
plain requests, missing and out-of-range ids, bad query values, wrong methods and
callers. Plain requests never reach FastAPI's router; anything else does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from reflow.api.app import create_app
from reflow.api.polled import PolledReads
from reflow.config import Settings
from reflow.db.tables import Sync, SyncRun
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.delivery import runtime_on, source_destination_model


@dataclass
class Passed:
    """What went on past ``PolledReads`` to FastAPI."""

    app: Any
    paths: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"] + "?" + scope["query_string"].decode())
        await self.app(scope, receive, send)


@dataclass
class Apps:
    dispatched: TestClient
    fastapi: TestClient
    passed: Passed
    ids: dict[str, int]
    token: str


def _without_dispatch(runtime: Runtime) -> Any:
    app = create_app(runtime)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not PolledReads]
    return app


def _spied(runtime: Runtime) -> tuple[Any, Passed]:
    app = create_app(runtime)
    app.middleware_stack = stack = app.build_middleware_stack()
    while not isinstance(stack, PolledReads):
        stack = stack.app
    passed = Passed(stack.app)
    stack.app = passed
    return app, passed


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def apps(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Apps]:
    home: Path = tmp_path_factory.mktemp(f"polled-{request.param}")
    with runtime_on(request.param, home, "reflow_polled") as runtime:
        result = initialize(runtime.engine)
        ids = _seed(runtime, result.workspace_id)
        app, passed = _spied(runtime)
        with TestClient(app) as dispatched, TestClient(_without_dispatch(runtime)) as fastapi:
            yield Apps(dispatched, fastapi, passed, ids, result.workspace_token)


def _seed(runtime: Runtime, ws: int) -> dict[str, int]:
    with runtime.session() as session:
        source, dest, model = source_destination_model(session, ws)
        syncs = [Sync(workspace_id=ws, operation="upsert", source_id=source.id,
                      source_object={"type": "model", "id": model.id}, destination_id=dest.id,
                      destination_object="request", mappings=[{"from": {"type": "column",
                                                                        "data": "id"}}])
                 for _ in range(3)]
        session.add_all(syncs)
        session.flush()
        run = SyncRun(workspace_id=ws, sync_id=syncs[0].id, status="completed")
        session.add(run)
        session.flush()
        return {"sync": syncs[0].id, "run": run.id}


def _same(apps: Apps, method: str, path: str, token: str | None = "") -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token or apps.token}"}
    ours = apps.dispatched.request(method, path, headers=headers)
    theirs = apps.fastapi.request(method, path, headers=headers)
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content), path
    assert ours.headers.items() == theirs.headers.items(), path


def _plain(ids: dict[str, int]) -> list[str]:
    return [
        f"/api/v1/sync_runs/{ids['run']}", f"/api/v1/syncs/{ids['sync']}", "/api/v1/syncs",
        "/api/v1/syncs?per_page=2", "/api/v1/syncs?page=2&per_page=2&order=asc",
        "/api/v1/syncs?page=0&per_page=1000&order=sideways", "/api/v1/syncs?page=9&x=&y=1",
        f"/api/v1/syncs/{ids['sync']}?per_page=abc",  # a query it does not read
        f"/api/v1/syncs/00{ids['sync']}",
        "/api/v1/sync_runs/999999", "/api/v1/syncs/0",  # not found
        "/api/v1/sync_runs/3000000000", "/api/v1/syncs/999999999999999999",  # beyond int32
        f"/api/v1/syncs/{ids['sync']}/sync_runs?per_page=1", "/api/v1/syncs/77/sync_runs",
    ]


def test_plain_polled_reads_skip_fastapi_and_answer_as_it_does(apps: Apps) -> None:
    for path in _plain(apps.ids):
        apps.passed.paths.clear()
        _same(apps, "GET", path)
        assert apps.passed.paths == [], path


def test_an_id_beyond_the_stores_range_is_not_found(apps: Apps) -> None:
    headers = {"Authorization": f"Bearer {apps.token}"}
    for path in ("/api/v1/sync_runs/3000000000", "/api/v1/syncs/999999999999999999"):
        response = apps.dispatched.get(path, headers=headers)
        assert response.status_code == 404 and response.json()["status"] == "not_found", path


@pytest.mark.parametrize("path", [
    "/api/v1/sync_runs/-1", "/api/v1/sync_runs/abc", "/api/v1/sync_runs/+1",
    "/api/v1/sync_runs/9223372036854775808", "/api/v1/syncs/99999999999999999999",
    "/api/v1/sync_runs/1/", "/api/v1/syncs/", "/api/v1/syncs?per_page=abc",
    "/api/v1/syncs?per_page=", "/api/v1/syncs?page=1&page=2", "/api/v1/syncs?order=",
    "/api/v1/syncs?page=-1", "/api/v1/syncs?per_page=1e3", "/api/v1/syncs/test_status",
    "/api/v1/syncs/1/sync_runs?page=x", "/api/v1/syncs/1/alerts", "/api/v1/sources",
])
def test_anything_else_goes_to_fastapi_unchanged(apps: Apps, path: str) -> None:
    apps.passed.paths.clear()
    _same(apps, "GET", path)
    assert len(apps.passed.paths) == 1, path


@pytest.mark.parametrize("method", ["HEAD", "POST", "DELETE"])
def test_other_methods_go_to_fastapi(apps: Apps, method: str) -> None:
    apps.passed.paths.clear()
    _same(apps, method, "/api/v1/syncs")
    _same(apps, method, f"/api/v1/sync_runs/{apps.ids['run']}")
    assert len(apps.passed.paths) == 2


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_a_bad_caller_is_refused_at_the_edge_first(apps: Apps, token: str | None) -> None:
    apps.passed.paths.clear()
    _same(apps, "GET", "/api/v1/syncs", token=token)
    assert apps.passed.paths == []


def test_a_process_runs_its_polled_reads_once_before_it_serves(tmp_path: Path) -> None:
    """Its first polled requests open no connection and run statements it already ran
    while starting (compiled, and on PostgreSQL the backend's catalog loaded)."""
    db = create_pg_database("reflow_warm")
    runtime = Runtime.from_settings(Settings(
        home=tmp_path, secret_key="k", log_level="WARNING",
        database_url=f"postgresql://postgres@127.0.0.1:5432/{db}"))
    try:
        result = initialize(runtime.engine)
        ids = _seed(runtime, result.workspace_id)
        statements: list[str] = []
        engine = runtime.read_engine
        assert engine is not None
        event.listen(engine, "before_cursor_execute",
                     lambda _c, _cur, sql, *_: statements.append(sql))
        connects: list[object] = []
        event.listen(engine, "connect", lambda *_: connects.append(_))
        headers = {"Authorization": f"Bearer {result.workspace_token}"}
        with TestClient(create_app(runtime), headers=headers) as client:
            at_start, opened = set(statements), len(connects)
            assert opened >= 1
            statements.clear()
            for path in (f"/api/v1/sync_runs/{ids['run']}", "/api/v1/syncs"):
                assert client.get(path).status_code == 200
                assert statements[0] in at_start, path  # the run; the page of syncs
                statements.clear()
            assert len(connects) == opened
    finally:
        runtime.dispose()
        drop_pg_database(db)
