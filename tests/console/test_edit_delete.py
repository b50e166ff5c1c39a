"""Editing a sync and deleting syncs, sources, destinations and models from the console,
through the services the API's PATCH and DELETE routes call."""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import event, func, select

from reflow.db.tables import Source, SourceModel, Sync, SyncRun
from reflow.services import syncs
from tests.console.conftest import App, csrf_of


def _count(app: App, table: type) -> int:
    with app.runtime.sessions() as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


def test_edit_a_sync_keeps_what_the_form_cannot_show(app: App) -> None:
    sid = app.demo.sync_id
    with app.runtime.session() as s:  # a flag and a metadata mapping the form has no row for
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=sid)
        mappings = [dict(m) for m in sync.mappings]
        for m in mappings:
            if m["to"] == "email":
                m["sync_null_values"] = False
        syncs.update(s, sync=sync, vault=app.runtime.vault, body={"mappings": mappings})
    client = app.signed_in()
    page = client.get(f"/syncs/{sid}/edit").text
    assert "Edit sync" in page and 'name="mapped"' in page
    form = dict(re.findall(r'<input[^>]*name="(\w+)"[^>]*value="([^"]*)"', page))
    rows = dict(re.findall(r'name="kind_(\d+)" aria-label="Value of (\w+) from"', page))
    by_field = {f: i for i, f in rows.items()}
    plan_select = re.search(rf'name="kind_{by_field["plan"]}"[^>]*>(.*?)</select>', page, re.S)
    assert plan_select and 'value="column" selected' in plan_select.group(1)  # as the sync maps
    form.update({"csrf": csrf_of(page), "action": "save", "source_id": str(app.demo.source_id),
                 "source_object": f"model:{app.demo.model_id}",
                 "destination_id": str(app.demo.destination_id),
                 "destination_object": "customers", "operation": "update", "frequency": "hourly",
                 "minute": "15", "key": "id", "label": "Edited <b>demo</b>"})
    form[f"kind_{by_field['plan']}"], form[f"value_{by_field['plan']}"] = "constant", "gold"
    form[f"kind_{by_field['name']}"] = ""
    for i, f in rows.items():
        if f not in ("plan", "name"):
            form[f"kind_{i}"], form[f"value_{i}"] = "column", f
    answer = client.post(f"/syncs/{sid}/edit", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    with app.runtime.sessions() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=sid)
        by_to = {m["to"]: m for m in sync.mappings}
        assert sync.operation == "update" and sync.label == "Edited <b>demo</b>"
        assert sync.mode["triggers"]["schedule"]["frequency"] == "hourly"
        assert by_to["plan"]["from"]["data"]["value"] == "gold"
        assert "name" not in by_to
        assert by_to["email"]["sync_null_values"] is False  # kept through the edit
    detail = client.get(f"/syncs/{sid}").text
    assert "Edited &lt;b&gt;demo&lt;/b&gt;" in detail

    form["operation"] = "no_such_operation"  # refused by the service, shown inline
    bad = client.post(f"/syncs/{sid}/edit", data=form)
    assert bad.status_code == 400 and 'role="alert"' in bad.text
    assert "no_such_operation" in bad.text


def _statements(app: App, client: Any, path: str) -> int:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(app.runtime.engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(app.runtime.engine, "before_cursor_execute", count)
    return len(seen)


def test_the_syncs_page_costs_the_same_statements_for_more_syncs(app: App) -> None:
    client = app.signed_in()
    with app.runtime.sessions() as s:
        base = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        body = {"operation": "upsert", "mappings": base.mappings,
                "source_attributes": {"connection_id": base.source_id,
                                      "object": {"type": "model", "id": app.demo.model_id}},
                "destination_attributes": {"connection_id": base.destination_id,
                                           "object": base.destination_object}}
    one = _statements(app, client, "/syncs")
    copies = []
    with app.runtime.session() as s:
        for i in range(5):
            made = syncs.create(s, workspace_id=app.demo.workspace_id, vault=app.runtime.vault,
                                body={**body, "label": f"Copy {i}"})
            assert made is not None
            copies.append(made.id)
            s.add(SyncRun(workspace_id=app.demo.workspace_id, sync_id=made.id,
                          status="completed", records_processed=i))
    six = _statements(app, client, "/syncs")
    assert "Copy 4" in client.get("/syncs").text
    assert six == one, (one, six)
    with app.runtime.session() as s:
        for sync_id in copies:
            syncs.delete(s, sync=syncs.get(s, workspace_id=app.demo.workspace_id,
                                           sync_id=sync_id))


def test_alerts_are_added_and_removed_in_settings(app: App) -> None:
    client = app.signed_in()
    sid = str(app.demo.sync_id)
    page = client.get("/settings").text
    assert "No sync has alerts configured" in page
    bad = client.post("/settings/alerts", data={
        "csrf": csrf_of(page), "sync_id": sid, "type": "InvalidRecordPercentAlertConfiguration",
        "threshold": "150"})
    assert bad.status_code == 400
    assert re.search(r'id="err-alert.threshold" role="alert">[^<]*at most 100', bad.text)
    ok = client.post("/settings/alerts", data={
        "csrf": csrf_of(page), "sync_id": sid, "type": "RuntimeAlertConfiguration",
        "send_for": "every_time", "threshold": "30", "unit": "minutes", "record_type":
        "records_failed", "status_name": "completed"}, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    with app.runtime.sessions() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        assert [(a["type"], a["send_for"], a["should_send_recovery"], a["options"])
                for a in sync.alert_attributes] == [
            ("RuntimeAlertConfiguration", "every_time", False,
             {"threshold": "30", "unit": "minutes"})]
        alert_id = sync.alert_attributes[0]["id"]
    page = client.get("/settings").text
    assert "RuntimeAlertConfiguration" in page and "threshold 30" in page
    client.post(f"/settings/alerts/{sid}/{alert_id}/delete", data={"csrf": csrf_of(page)})
    with app.runtime.sessions() as s:
        assert syncs.get(s, workspace_id=app.demo.workspace_id,
                         sync_id=app.demo.sync_id).alert_attributes == []


def test_a_sync_of_a_table_opens_for_editing_with_its_table_chosen(app: App) -> None:
    client = app.signed_in()
    with app.runtime.session() as s:
        made = syncs.create(s, workspace_id=app.demo.workspace_id, vault=app.runtime.vault, body={
            "operation": "upsert", "label": "From the table",
            "source_attributes": {"connection_id": app.demo.source_id, "object": {
                "type": "table", "table_catalog": "main", "table_schema": "main",
                "table_name": "customers"}},
            "destination_attributes": {"connection_id": app.demo.destination_id,
                                       "object": "customers"},
            "mappings": [{"from": {"type": "column", "data": "id"}, "to": "id",
                          "is_primary_identifier": True}]})
        assert made is not None
        sync_id = made.id
    page = ""
    for _ in range(100):  # the source's table list loads in the background on first use
        page = client.get(f"/syncs/{sync_id}/edit").text
        if re.search(r'<option value="table:\d+" selected>Table · main.customers', page):
            break
        time.sleep(0.1)
    assert re.search(r'<option value="table:\d+" selected>Table · main.customers', page), page
    assert re.search(r'name="key" value="id"[^>]*checked', page)
    # Saved with only the schedule changed: the mappings stay exactly as stored, so the
    # next run is not made a full resync by an edit that did not touch them.
    form = dict(re.findall(r'<input[^>]*name="(\w+)"[^>]*value="([^"]*)"', page))
    form.update(re.findall(r'<select[^>]*name="(\w+)"[^>]*>(?:(?!</select>).)*?'
                           r'<option value="([^"]*)" selected', page, re.S))
    form.update({"csrf": csrf_of(page), "action": "save", "frequency": "hourly",
                 "minute": "5"})
    with app.runtime.sessions() as s:
        before = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=sync_id).mappings
    answer = client.post(f"/syncs/{sync_id}/edit", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    with app.runtime.sessions() as s:
        after = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=sync_id)
        assert after.mappings == before
        assert after.mode["triggers"]["schedule"]["frequency"] == "hourly"
    with app.runtime.session() as s:
        syncs.delete(s, sync=syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=sync_id))


def test_deletes_refuse_what_is_in_use_inline_then_remove(app: App) -> None:
    client = app.signed_in()
    demo = app.demo
    for path, what in ((f"/sources/{demo.source_id}", "source"),
                       (f"/destinations/{demo.destination_id}", "destination"),
                       (f"/models/{demo.model_id}", "model")):
        page = client.get(path).text
        answer = client.post(f"{path}/delete", data={"csrf": csrf_of(page), "confirm": "1"})
        assert answer.status_code == 409, (path, answer.status_code)
        assert re.search(rf'id="delete-error">{what} {path.rsplit("/", 1)[1]} is used by syncs '
                         rf'{demo.sync_id}', answer.text), answer.text
        assert "<h1" in answer.text  # the object's own page, not an error page
    sources_before = _count(app, Source)

    page = client.get(f"/syncs/{demo.sync_id}").text
    unconfirmed = client.post(f"/syncs/{demo.sync_id}/delete", data={"csrf": csrf_of(page)})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    syncs_before = _count(app, Sync)
    gone = client.post(f"/syncs/{demo.sync_id}/delete",
                       data={"csrf": csrf_of(page), "confirm": "1"}, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/syncs"
    assert _count(app, Sync) == syncs_before - 1
    assert client.get(f"/syncs/{demo.sync_id}").status_code == 404

    page = client.get(f"/models/{demo.model_id}").text
    client.post(f"/models/{demo.model_id}/delete", data={"csrf": csrf_of(page), "confirm": "1"})
    with app.runtime.sessions() as s:
        assert s.get(SourceModel, demo.model_id) is None
    page = client.get(f"/sources/{demo.source_id}").text
    done = client.post(f"/sources/{demo.source_id}/delete",
                       data={"csrf": csrf_of(page), "confirm": "1"}, follow_redirects=False)
    assert done.status_code == 303 and _count(app, Source) == sources_before - 1
