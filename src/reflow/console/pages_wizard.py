"""The new sync wizard: source object → destination object → sync key and mappings →
operation and schedule → a dry run → save.

One form, posted at each step with the earlier answers carried in its fields, so it
works without JavaScript. The dry run is ``sync_preview.preview`` (what
``POST /api/v1/syncs/preview`` answers: the API's own checks, then the engine's mapping,
coercion and diff over the first rows, nothing written); saving calls ``syncs.create``
like ``POST /syncs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from reflow.connectors.base import DestinationObject
from reflow.console import forms
from reflow.console.deps import Console, ConsoleRoute, checked_form, console, every
from reflow.db.repo import PageParams
from reflow.db.tables import Destination, Source
from reflow.errors import BadRequest, ReflowError
from reflow.services import (
    destination_objects,
    destinations,
    models,
    source_catalog,
    sources,
    sync_preview,
    syncs,
)
from reflow.services.schedules import DAYS, FREQUENCIES

router = APIRouter(route_class=ConsoleRoute)
#: Per destination field: where its value comes from.
KINDS = ("", "column", "constant", "template")
_MAPPING_ERROR = re.compile(r"^mappings\[(\d+)\]")


@dataclass
class Wizard:
    form: dict[str, str]
    sources: list[Source] = field(default_factory=list)
    objects: list[tuple[str, str]] = field(default_factory=list)  # (value, label)
    destinations: list[Destination] = field(default_factory=list)
    dest_objects: list[DestinationObject] = field(default_factory=list)
    columns: list[tuple[str, str]] = field(default_factory=list)  # source (name, type)
    target: DestinationObject | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per destination field
    errors: dict[str, str] = field(default_factory=dict)
    preview: sync_preview.SyncPreview | None = None
    step: int = 1
    #: Editing: the sync's id, and its mappings the form cannot show, kept as they are.
    sync_id: int | None = None
    kept: list[dict[str, Any]] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        return self.form.get(name, default)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _source_objects(ui: Console, source: Source) -> list[tuple[str, str]]:
    out = [(f"model:{m.id}", f"Model · {m.name}") for m in every(
        lambda p: models.list_(ui.session, source=source, params=p))]
    tables = source_catalog.list_tables(ui.session, runtime=ui.runtime, source=source,
                                        params=PageParams(1, 100, "asc"))
    ui.session.commit()  # a first listing starts loading the tables, as the API does
    out += [(f"table:{t.id}", f"Table · {t.table_schema}.{t.table_name}")
            for t in tables.page.items]
    return out


def _chosen_source(ui: Console, wiz: Wizard) -> Source | None:
    raw = wiz.get("source_id")
    if not raw.isdigit():
        return None
    return sources.get(ui.session, workspace_id=ui.workspace_id, source_id=int(raw))


SourceChoice = tuple[dict[str, Any], list[tuple[str, str]]]


def _source_object(ui: Console, source: Source, value: str) -> SourceChoice:
    """(the sync's source object, its columns) for ``model:1``/``table:2``."""
    kind, _, raw = value.partition(":")
    if not raw.isdigit():
        raise BadRequest("source_object: choose a model or a table")
    if kind == "model":
        model = models.get(ui.session, source=source, model_id=int(raw))
        columns = [(c["name"], c["type"]) for c in model.columns]
        return {"type": "model", "id": model.id}, columns
    table = source_catalog.get_table(ui.session, source=source, table_id=int(raw))
    table = source_catalog.ensure_columns(ui.session, source=source, vault=ui.vault, table=table)
    obj = {"type": "table", "table_catalog": table.table_catalog,
           "table_schema": table.table_schema, "table_name": table.table_name}
    return obj, [(c["name"], c["data_type"]) for c in table.columns or []]


def load(ui: Console, wiz: Wizard) -> dict[str, Any] | None:
    """Fill the choices each step offers; returns the chosen source object."""
    wiz.sources = every(lambda p: sources.list_(ui.session, workspace_id=ui.workspace_id, params=p))
    source = _chosen_source(ui, wiz)
    if source is None:
        return None
    wiz.objects = _source_objects(ui, source)
    if not wiz.get("source_object"):
        return None
    obj, wiz.columns = _source_object(ui, source, wiz.get("source_object"))
    wiz.step = 2
    wiz.destinations = every(
        lambda p: destinations.list_(ui.session, workspace_id=ui.workspace_id, params=p))
    raw = wiz.get("destination_id")
    if not raw.isdigit():
        return obj
    destination = destinations.get(ui.session, workspace_id=ui.workspace_id,
                                   destination_id=int(raw))
    wiz.dest_objects = destination_objects.cached(ui.session, destination_id=destination.id)
    name = wiz.get("destination_object")
    if not name:
        return obj
    wiz.target = destinations.get_object(destination, vault=ui.vault, full_name=name)
    wiz.step = 3
    wiz.rows = field_rows(wiz)
    return obj


def field_rows(wiz: Wizard) -> list[dict[str, Any]]:
    """A row per destination field; on the first visit columns are matched by name."""
    assert wiz.target is not None
    by_name = {_norm(c): c for c, _ in wiz.columns}
    first_visit = "mapped" not in wiz.form
    rows = []
    for i, f in enumerate(wiz.target.fields):
        kind, value = wiz.get(f"kind_{i}"), wiz.get(f"value_{i}")
        if first_visit and _norm(f.full_name) in by_name:
            kind, value = "column", by_name[_norm(f.full_name)]
        rows.append({"index": i, "field": f, "kind": kind if kind in KINDS else "",
                     "value": value})
    return rows


def sync_key(wiz: Wizard) -> str:
    """The sync key's destination field: as chosen, else the first identifier matched."""
    chosen = wiz.get("key")
    if chosen or "mapped" in wiz.form:
        return chosen
    for row in wiz.rows:
        if row["field"].identifier and row["kind"] == "column":
            return str(row["field"].full_name)
    return ""


def _mapping(row: dict[str, Any], key: str) -> dict[str, Any] | None:
    kind, value, to = row["kind"], row["value"], row["field"].full_name
    if kind == "column" and value:
        source: dict[str, Any] = {"type": "column", "data": value}
    elif kind == "constant":
        source = {"type": "constant_value", "data": {"value": value, "basic_type": "text"}}
    elif kind == "template":
        source = {"type": "liquid_template", "data": {"liquid_template": value}}
    else:
        return None
    return {"from": source, "to": to, "is_primary_identifier": to == key}


def _schedule(wiz: Wizard) -> dict[str, Any]:
    freq = wiz.get("frequency", "never")
    body: dict[str, Any] = {"schedule_frequency": freq}
    for name in ("hour", "minute"):
        raw = wiz.get(name)
        if raw.strip():
            if not raw.strip().isdigit():
                raise BadRequest(f"schedule_{name} must be a whole number")
            body[f"schedule_{name}"] = int(raw)
    if freq == "weekly":
        body["schedule_day"] = wiz.get("day") or "Monday"
    if freq == "expression":
        body["cron_expression"] = wiz.get("cron")
    return body


def sync_body(wiz: Wizard, obj: dict[str, Any], key: str) -> tuple[dict[str, Any], list[str]]:
    """The ``POST /syncs`` body, and which destination field each mapping index is."""
    pairs = [(m, r["field"].full_name) for r in wiz.rows if (m := _mapping(r, key))]
    body = {
        "label": wiz.get("label").strip() or None,
        "operation": wiz.get("operation") or "upsert",
        "source_attributes": {"connection_id": int(wiz.get("source_id")), "object": obj},
        "destination_attributes": {"connection_id": int(wiz.get("destination_id")),
                                   "object": wiz.get("destination_object")},
        "mappings": [m for m, _ in pairs],
        **_schedule(wiz),
    }
    return body, [to for _, to in pairs]


def check_key(wiz: Wizard, key: str) -> None:
    row = next((r for r in wiz.rows if r["field"].full_name == key), None)
    if row is None or row["kind"] != "column" or not row["value"]:
        raise BadRequest("key: choose the sync key: a destination field that identifies "
                         "records, mapped from a source column")


def place_errors(message: str, order: list[str]) -> dict[str, str]:
    """Service messages next to their inputs: ``mappings[2]...`` beside that field's row."""
    known = {"label", "operation", "schedule_frequency", "schedule_hour", "schedule_minute",
             "schedule_day", "cron_expression", "mappings", "source_object", "key",
             "destination_object"}
    errors: dict[str, str] = {}
    for key, text in forms.field_errors(message, known).items():
        match = _MAPPING_ERROR.match(text)
        if match and int(match.group(1)) < len(order):
            key = f"map:{order[int(match.group(1))]}"
        errors[key] = text
    return errors


def page(ui: Console, wiz: Wizard, status: int = 200) -> Response:
    return ui.page("wizard.html", status=status, wiz=wiz, key=sync_key(wiz) if wiz.target else "",
                   frequencies=FREQUENCIES, days=DAYS)


@router.get("/syncs/new")
def new_sync(ui: Console = Depends(console)) -> Response:
    wiz = Wizard({})
    load(ui, wiz)
    return page(ui, wiz)


@router.post("/syncs/new")
def wizard_step(form: dict[str, str] = Depends(checked_form),
                ui: Console = Depends(console)) -> Response:
    ui.require("editor")
    wiz = Wizard(form)
    try:
        obj = load(ui, wiz)
    except ReflowError as exc:
        wiz.errors = forms.field_errors(exc.message, {"source_object", "destination_object"})
        return page(ui, wiz, 400)
    action = form.get("action", "next")
    if wiz.step < 3 or action == "next" or obj is None:
        return page(ui, wiz)
    return _finish(ui, wiz, obj, action)


def _finish(ui: Console, wiz: Wizard, obj: dict[str, Any], action: str) -> Response:
    key = sync_key(wiz)
    body, order = sync_body(wiz, obj, key)
    try:
        check_key(wiz, key)
        if action == "save":
            sync = syncs.create(ui.session, workspace_id=ui.workspace_id, vault=ui.vault,
                                body=body)
            assert sync is not None
            ui.session.commit()
            return RedirectResponse(f"/syncs/{sync.id}", status_code=303)
        wiz.preview = sync_preview.preview(ui.session, workspace_id=ui.workspace_id,
                                           vault=ui.vault, body=body)
        wiz.step = 4
    except ReflowError as exc:
        ui.session.rollback()
        wiz.errors = place_errors(exc.message, order)
        return page(ui, wiz, 400)
    return page(ui, wiz)
