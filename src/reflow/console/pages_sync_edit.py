"""Editing a sync: the wizard's form, filled from the sync, saved through
``syncs.update`` (what ``PATCH /syncs/{id}`` calls). Operations offered are the
destination object's; the service refuses what does not fit it, shown inline.

Mappings the form cannot show (sync metadata, segment membership, fields the destination
does not list) are kept as they are, and so are a mapping's flags (``sync_null_values``,
lookups...) when its source stays of the same kind: editing never drops them silently.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from reflow.console import forms
from reflow.console.deps import Console, ConsoleRoute, checked_form, console
from reflow.console.pages_wizard import (
    Wizard,
    check_key,
    field_rows,
    load,
    page,
    place_errors,
    sync_body,
    sync_key,
)
from reflow.db.tables import Sync
from reflow.errors import BadRequest, ReflowError
from reflow.services import syncs
from reflow.services.schedules import schedule_fields

router = APIRouter(route_class=ConsoleRoute)
#: Mapping sources the form edits, and the form's word for each.
EDITABLE = {"column": "column", "constant_value": "constant", "liquid_template": "template"}


def _form_of(sync: Sync) -> dict[str, str]:
    fields = schedule_fields(sync.mode)
    obj = sync.source_object
    form = {"source_id": str(sync.source_id), "destination_id": str(sync.destination_id),
            "destination_object": sync.destination_object, "operation": sync.operation,
            "label": sync.label or "", "frequency": fields["schedule_frequency"],
            "hour": _text(fields.get("schedule_hour")),
            "minute": _text(fields.get("schedule_minute")),
            "day": _text(fields.get("schedule_day")), "cron": _text(fields.get("cron_expression"))}
    if obj.get("type") == "model":
        form["source_object"] = f"model:{obj['id']}"
    elif obj.get("type") != "table":
        raise BadRequest(f"source_object: this sync reads a {obj.get('type')}; the console edits "
                         "syncs of models and tables (use PATCH /api/v1/syncs/{id})")
    return form


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _table_choice(wiz: Wizard, sync: Sync) -> str:
    obj = sync.source_object
    label = f"Table · {obj['table_schema']}.{obj['table_name']}"
    return next((value for value, text in wiz.objects if text == label), "")


def _filled(ui: Console, sync: Sync) -> Wizard:
    """The wizard at its mappings step, each row as the sync maps that field."""
    wiz = Wizard(_form_of(sync), sync_id=sync.id)
    load(ui, wiz)
    if not wiz.get("source_object"):
        wiz.form["source_object"] = _table_choice(wiz, sync)
        load(ui, wiz)
    if wiz.target is None:
        return wiz
    index = {row["field"].full_name: row["index"] for row in wiz.rows}
    wiz.form.update({"mapped": "1", "key": next(
        (m["to"] for m in sync.mappings if m["is_primary_identifier"]), "")})
    for i in index.values():
        wiz.form[f"kind_{i}"] = wiz.form[f"value_{i}"] = ""
    for m in sync.mappings:
        kind, data = m["from"]["type"], m["from"].get("data")
        if m["to"] not in index or kind not in EDITABLE:
            continue
        value = data if kind == "column" else (data or {}).get(
            "value" if kind == "constant_value" else "liquid_template")
        wiz.form[f"kind_{index[m['to']]}"] = EDITABLE[kind]
        wiz.form[f"value_{index[m['to']]}"] = _text(value)
    wiz.rows = field_rows(wiz)
    wiz.kept = _kept(sync, {row["field"].full_name for row in wiz.rows})
    return wiz


def _kept(sync: Sync, shown: set[str]) -> list[dict[str, Any]]:
    return [m for m in sync.mappings if m["to"] not in shown or m["from"]["type"] not in EDITABLE]


def _merged(sync: Sync, edited: list[dict[str, Any]], kept: list[dict[str, Any]],
            ) -> list[dict[str, Any]]:
    """The form's mappings with what each had beyond the form (flags, a constant's
    basic type when its value did not change), then the mappings kept as they were."""
    before = {m["to"]: m for m in sync.mappings}
    out = []
    for m in edited:
        old = before.get(m["to"])
        if old is not None and old["from"]["type"] == m["from"]["type"]:
            if m["from"]["type"] == "constant_value" and _text(
                    (old["from"].get("data") or {}).get("value")) == m["from"]["data"]["value"]:
                m = {**m, "from": old["from"]}
            m = {**old, **m}
        out.append(m)
    taken = {m["to"] for m in out}
    return out + [m for m in kept if m["to"] not in taken]


@router.get("/syncs/{sync_id}/edit")
def edit_sync(sync_id: int, ui: Console = Depends(console)) -> Response:
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=sync_id)
    return page(ui, _filled(ui, sync))


@router.post("/syncs/{sync_id}/edit")
def save_sync(sync_id: int, form: dict[str, str] = Depends(checked_form),
              ui: Console = Depends(console)) -> Response:
    ui.require("editor")
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=sync_id)
    wiz = Wizard(form, sync_id=sync.id)
    try:
        obj = load(ui, wiz)
    except ReflowError as exc:
        wiz.errors = forms.field_errors(exc.message, {"source_object", "destination_object"})
        return page(ui, wiz, 400)
    wiz.kept = _kept(sync, {row["field"].full_name for row in wiz.rows})
    if form.get("action") != "save" or obj is None or wiz.target is None:
        return page(ui, wiz)
    key = sync_key(wiz)
    body, order = sync_body(wiz, obj, key)
    body["mappings"] = _merged(sync, body["mappings"], wiz.kept)
    try:
        check_key(wiz, key)
        syncs.update(ui.session, sync=sync, vault=ui.vault, body=body)
        ui.session.commit()
    except ReflowError as exc:
        ui.session.rollback()
        wiz.errors = place_errors(exc.message, order)
        return page(ui, wiz, 400)
    return RedirectResponse(f"/syncs/{sync.id}", status_code=303)
