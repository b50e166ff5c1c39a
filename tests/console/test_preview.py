"""The dry run of a new sync (services/sync_preview.py, POST /api/v1/syncs/preview):
numbers checked against a warehouse built here, and nothing written anywhere."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from reflow.db.tables import Sync, SyncRun
from reflow.services import destinations, sources, sync_preview
from tests.console.conftest import App

#: ids 1..20, id 7 twice (both rows invalid, as a run treats them), one null id, and
#: one age the destination's INTEGER field cannot hold.
ROWS: list[tuple[Any, ...]] = [(i, f"p{i}@example.com", str(20 + i)) for i in range(1, 21)]
ROWS += [(7, "again@example.com", "30"), (None, "nokey@example.com", "40"),
         (21, "old@example.com", "very old")]


@pytest.fixture(scope="module")
def wired(app: App, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder: Path = tmp_path_factory.mktemp("preview")
    warehouse, crm = folder / "people.sqlite", folder / "crm.sqlite"
    with sqlite3.connect(warehouse) as conn:
        conn.execute("CREATE TABLE people (id INTEGER, email TEXT, age TEXT)")
        conn.executemany("INSERT INTO people VALUES (?, ?, ?)", ROWS)
    conn.close()
    with sqlite3.connect(crm) as conn:
        conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, age INTEGER)")
        conn.execute("INSERT INTO contacts VALUES (1, 'kept@example.com', 99)")
    conn.close()
    with app.runtime.session() as s:
        ws, vault = app.demo.workspace_id, app.runtime.vault
        source = sources.create(s, workspace_id=ws, vault=vault, type="sqlite",
                                credentials={"path": str(warehouse)}, name="Preview people")
        dest = destinations.create(s, workspace_id=ws, vault=vault, type="sqlite",
                                   credentials={"path": str(crm)}, name="Preview CRM")
        return {"source": source.id, "destination": dest.id, "crm": crm}


def _body(wired: dict[str, Any], operation: str) -> dict[str, Any]:
    return {
        "operation": operation,
        "source_attributes": {"connection_id": wired["source"], "object": {
            "type": "table", "table_catalog": "main", "table_schema": "main",
            "table_name": "people"}},
        "destination_attributes": {"connection_id": wired["destination"], "object": "contacts"},
        "mappings": [
            {"from": {"type": "column", "data": "id"}, "to": "id", "is_primary_identifier": True},
            {"from": {"type": "column", "data": "email"}, "to": "email"},
            {"from": {"type": "column", "data": "age"}, "to": "age"},
        ],
    }


def _state(app: App, crm: Path) -> tuple[int, int, list[tuple[Any, ...]], list[str]]:
    with app.runtime.sessions() as s:
        counts = (s.scalar(select(func.count()).select_from(Sync)) or 0,
                  s.scalar(select(func.count()).select_from(SyncRun)) or 0)
    with sqlite3.connect(crm) as conn:
        rows = conn.execute("SELECT * FROM contacts ORDER BY id").fetchall()
    conn.close()
    files = sorted(str(p.relative_to(app.runtime.settings.home))
                   for p in Path(app.runtime.settings.home).rglob("*") if "snapshot" in p.name)
    return *counts, rows, files


def test_upsert_preview_counts_against_the_data_and_writes_nothing(
        app: App, wired: dict[str, Any]) -> None:
    before = _state(app, wired["crm"])
    with app.runtime.session() as s:
        result = sync_preview.preview(s, workspace_id=app.demo.workspace_id,
                                      vault=app.runtime.vault, body=_body(wired, "upsert"))
    assert result.rows_read == result.source_rows == len(ROWS) and not result.truncated
    # 23 rows: 2 share id 7, 1 has no id, 1 has an age that is not a number.
    assert result.invalid == 4
    assert result.creates_or_updates == len(ROWS) - 4 == 19
    assert result.creates == result.updates == result.deletes == 0
    reasons = sorted(r.reason for r in result.invalid_records)
    assert reasons == ["Duplicate value '7' of id", "Duplicate value '7' of id",
                       "Matching ID id is null",
                       "age: value 'very old' cannot be converted to INTEGER"]
    assert len(result.samples) == sync_preview.SAMPLE_RECORDS
    assert set(result.samples[0]) == {"id", "email", "age"}
    assert all(isinstance(r["age"], int) for r in result.samples)  # coerced like a run
    assert _state(app, wired["crm"]) == before


@pytest.mark.parametrize(("operation", "counted"), [
    ("create", "creates"), ("update", "updates"), ("delete", "deletes"), ("mirror", None)])
def test_each_operation_says_what_it_would_do(app: App, wired: dict[str, Any], operation: str,
                                              counted: str | None) -> None:
    with app.runtime.session() as s:
        result = sync_preview.preview(s, workspace_id=app.demo.workspace_id,
                                      vault=app.runtime.vault, body=_body(wired, operation))
    answer = result.as_dict()
    moved = {k: answer[k] for k in ("creates", "updates", "creates_or_updates", "deletes")}
    expected = {k: 0 for k in moved}
    expected[counted or "creates_or_updates"] = 19  # mirror: first run, nothing to delete
    assert moved == expected


def test_the_api_preview_is_bounded_and_refuses_bad_bodies(app: App, wired: dict[str, Any],
                                                           ) -> None:
    api = app.client
    auth = {"Authorization": f"Bearer {app.demo.workspace_token}"}
    before = _state(app, wired["crm"])
    answer = api.post("/api/v1/syncs/preview?limit=5", json=_body(wired, "upsert"), headers=auth)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert (data["rows_read"], data["source_rows"], data["truncated"]) == (5, 23, True)
    assert data["creates_or_updates"] == 5 and data["invalid"] == 0
    assert {r["id"] for r in data["sample_records"]} == {1, 2, 3, 4, 5}

    bad = _body(wired, "upsert")
    bad["mappings"][2]["to"] = "no_such_field"
    answer = api.post("/api/v1/syncs/preview", json=bad, headers=auth)
    assert answer.status_code in (400, 404, 422), answer.text
    assert "no_such_field" in answer.json()["message"]
    too_many = api.post("/api/v1/syncs/preview?limit=100000", json=_body(wired, "upsert"),
                        headers=auth)
    assert too_many.status_code == 400 and "limit" in too_many.json()["message"]
    assert _state(app, wired["crm"]) == before


def test_a_source_that_cannot_be_read_is_a_4xx_naming_it(app: App,
                                                         wired: dict[str, Any]) -> None:
    with app.runtime.sessions() as s:
        path = Path(sources.get(s, workspace_id=app.demo.workspace_id,
                                source_id=wired["source"]).connection_details["path"])
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE people RENAME TO people_gone")
    conn.close()
    try:
        answer = app.client.post("/api/v1/syncs/preview", json=_body(wired, "upsert"),
                                 headers={"Authorization": f"Bearer {app.demo.workspace_token}"})
        assert 400 <= answer.status_code < 500, answer.text
        assert "people" in answer.json()["message"], answer.json()
    finally:
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE people_gone RENAME TO people")
        conn.close()
