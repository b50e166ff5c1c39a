"""The reads clients poll most, GET /syncs, GET /syncs/{id} and GET /sync_runs/{id},
cost a fixed, small number of SQL statements on either state store (counted by a
SQLAlchemy event listener on the app's own engine, in process), and render what the
slower general path rendered: each sync's last run that ran, its source object, its
managed mark (never a stale one)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from reflow.api.app import create_app
from reflow.db.tables import Sync, SyncRun
from reflow.db.tables_managed import ManagedObject
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize
from tests.support.delivery import runtime_on, source_destination_model


@dataclass
class Hot:
    client: TestClient
    statements: list[str]
    ids: dict[str, Any]

    def get(self, path: str) -> tuple[dict[str, Any], list[str]]:
        self.client.get(path)  # the token looked up once (cached 1 s, services/auth.py)
        self.statements.clear()
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        return response.json(), [s for s in self.statements if "FROM api_tokens" not in s]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hot]:
    home: Path = tmp_path_factory.mktemp(f"hot-{request.param}")
    with runtime_on(request.param, home, "reflow_hot") as runtime:
        result = initialize(runtime.engine)
        ids = _seed(runtime, result.workspace_id)
        statements: list[str] = []
        for engine in {runtime.engine, runtime.read_engine or runtime.engine}:
            event.listen(engine, "before_cursor_execute",
                         lambda _c, _cur, sql, *_: statements.append(sql))
        headers = {"Authorization": f"Bearer {result.workspace_token}"}
        with TestClient(create_app(runtime), headers=headers) as client:
            yield Hot(client, statements, ids)


def _seed(runtime: Runtime, ws: int) -> dict[str, Any]:
    """Four syncs: one never run; one whose last run was skipped after a completed one;
    one read as a dataset, marked by a project; one with a stale mark (recorded for an
    object created at another time)."""
    with runtime.session() as session:
        source, dest, model = source_destination_model(session, ws)
        objects = [{"type": "model", "id": model.id}, {"type": "model", "id": model.id},
                   {"type": "model", "id": model.id, "as": "dataset"},
                   {"type": "model", "id": model.id + 1000}]  # a model that is gone
        syncs = [Sync(workspace_id=ws, operation="upsert", source_id=source.id,
                      source_object=obj, destination_id=dest.id, destination_object="request",
                      mappings=[]) for obj in objects]
        session.add_all(syncs)
        session.flush()
        ran = SyncRun(workspace_id=ws, sync_id=syncs[1].id, status="completed")
        session.add(ran)
        session.flush()
        session.add(SyncRun(workspace_id=ws, sync_id=syncs[1].id, status="skipped"))
        session.add_all([
            ManagedObject(workspace_id=ws, kind="sync", object_id=syncs[2].id, slug="kept",
                          managed_by="proj", object_created_at=syncs[2].created_at),
            ManagedObject(workspace_id=ws, kind="sync", object_id=syncs[3].id, slug="stale",
                          managed_by="proj", object_created_at=syncs[3].created_at
                          - dt.timedelta(days=1)),
        ])
        return {"syncs": [s.id for s in syncs], "run": ran.id, "model": model.id}


@pytest.mark.parametrize("query", ["per_page=2", "per_page=2&page=2&order=asc", "per_page=3&page=2",
                                   ""])
def test_get_syncs_costs_two_statements_with_its_total(hot: Hot, query: str) -> None:
    body, statements = hot.get(f"/api/v1/syncs?{query}")
    assert body["pagination"]["total_records"] == 4
    assert len(statements) == 2, statements  # the page with its total, the models


def test_a_page_past_the_end_is_counted(hot: Hot) -> None:
    body, statements = hot.get("/api/v1/syncs?per_page=2&page=3")
    assert body["data"] == [] and body["pagination"]["total_records"] == 4
    assert body["pagination"]["last_page"] == 2
    assert len(statements) == 2, statements  # the (empty) page, the count


def test_get_sync_costs_two_statements(hot: Hot) -> None:
    _, statements = hot.get(f"/api/v1/syncs/{hot.ids['syncs'][0]}")
    assert len(statements) == 2, statements  # the sync with its last run and mark, its model


def test_get_sync_run_costs_one_statement(hot: Hot) -> None:
    body, statements = hot.get(f"/api/v1/sync_runs/{hot.ids['run']}")
    assert body["data"]["status"] == "completed"
    assert len(statements) == 1, statements


def test_a_sync_renders_the_same_in_the_list_and_alone(hot: Hot) -> None:
    listed = {s["id"]: s for s in hot.get("/api/v1/syncs")[0]["data"]}
    for sync_id in hot.ids["syncs"]:
        assert hot.get(f"/api/v1/syncs/{sync_id}")[0]["data"] == listed[sync_id]


def test_last_run_mark_and_source_object(hot: Hot) -> None:
    never, skipped_last, dataset, stale = (
        hot.get(f"/api/v1/syncs/{i}")[0]["data"] for i in hot.ids["syncs"])
    assert (never["status"], never["last_run_id"], never["last_run_at"]) == ("Ready", None, None)
    # A skipped run says nothing about health: the completed run before it is the last.
    assert skipped_last["last_run_id"] == hot.ids["run"]
    assert skipped_last["status"] == "Up to Date" and skipped_last["last_run_at"]
    assert (dataset["slug"], dataset["managed_by"]) == ("kept", "proj")
    assert (stale["slug"], stale["managed_by"]) == (None, None)
    assert dataset["source_attributes"]["object"] == {
        "type": "dataset", "id": hot.ids["model"], "dataset_id": hot.ids["model"], "name": "m",
        "created_at": dataset["source_attributes"]["object"]["created_at"],
        "updated_at": dataset["source_attributes"]["object"]["updated_at"],
        "query": "SELECT 1"}
    assert stale["source_attributes"]["object"] == {"type": "model",
                                                    "id": hot.ids["model"] + 1000}
