"""Editing a sync and deleting syncs, sources, destinations and models from the console,
through the services the API's PATCH and DELETE routes call."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from reflow.db.tables import Source, SourceModel, Sync
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
