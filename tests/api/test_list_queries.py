"""List endpoints answer with a fixed number of SQL statements per page: GET /syncs
with 3 syncs and with 30 costs the same statements (counted by a SQLAlchemy event
listener on the app's own engine, in process), and still renders each sync's own
source object and last run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from reflow.api.app import create_app
from reflow.config import Settings
from reflow.db.tables import Destination, Source, SourceModel, Sync, SyncRun
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize


@dataclass
class App:
    runtime: Runtime
    client: TestClient
    workspace_id: int
    statements: list[str]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    home: Path = tmp_path_factory.mktemp("list-queries")
    runtime = Runtime.from_settings(Settings(home=home, secret_key="k", log_level="WARNING"))
    result = initialize(runtime.engine)
    statements: list[str] = []
    event.listen(runtime.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: statements.append(sql))
    headers = {"Authorization": f"Bearer {result.workspace_token}"}
    with TestClient(create_app(runtime), headers=headers) as client:
        yield App(runtime, client, result.workspace_id, statements)


def add_syncs(app: App, n: int) -> list[tuple[int, int | None, str]]:
    """``n`` syncs, each reading its own model; every other one with two runs. Returns
    (sync id, id of its last run or None, its model's name)."""
    made = []
    with app.runtime.session() as session:
        common = {"workspace_id": app.workspace_id, "credentials_encrypted": "x"}
        source, dest = Source(name="s", type="postgres", **common), Destination(
            name="d", type="http_request", **common)
        session.add_all([source, dest])
        session.flush()
        for i in range(n):
            model = SourceModel(workspace_id=app.workspace_id, source_id=source.id,
                                name=f"model {i}", query=f"SELECT {i}")
            session.add(model)
            session.flush()
            sync = Sync(workspace_id=app.workspace_id, operation="upsert", source_id=source.id,
                        source_object={"type": "model", "id": model.id},
                        destination_id=dest.id, destination_object="request", mappings=[])
            session.add(sync)
            session.flush()
            runs = [SyncRun(workspace_id=app.workspace_id, sync_id=sync.id, status=status)
                    for status in (("failed", "completed") if i % 2 else ())]
            session.add_all(runs)
            session.flush()
            made.append((sync.id, runs[-1].id if runs else None, model.name))
    return made


def get_syncs(app: App) -> tuple[list[dict[str, Any]], int]:
    app.client.get("/api/v1/syncs", params={"per_page": 1})  # the token looked up once
    app.statements.clear()
    response = app.client.get("/api/v1/syncs", params={"per_page": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"], len(app.statements)


def test_get_syncs_costs_the_same_statements_for_3_and_30_syncs(app: App) -> None:
    made = add_syncs(app, 3)
    data, with_3 = get_syncs(app)
    made += add_syncs(app, 27)
    data, with_30 = get_syncs(app)
    assert len(data) == 30
    assert with_30 == with_3, app.statements
    by_id = {s["id"]: s for s in data}
    for sync_id, last_run_id, model_name in made:
        rendered = by_id[sync_id]
        assert rendered["last_run_id"] == last_run_id
        assert rendered["status"] == ("Up to Date" if last_run_id else "Ready")
        assert rendered["source_attributes"]["object"]["name"] == model_name
        assert rendered["source_attributes"]["object"]["type"] == "model"


def test_a_bad_token_costs_one_statement(app: App) -> None:
    app.statements.clear()
    response = app.client.get("/api/v1/syncs", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert len(app.statements) == 1, app.statements
