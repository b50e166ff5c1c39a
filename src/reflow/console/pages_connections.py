"""Sources and destinations: list, create from the connector's own form, connection
test with each step's result, and a browser of their objects and fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse, Response

from reflow.connectors import registry
from reflow.console import forms
from reflow.console.deps import Console, ConsoleRoute, checked_form, console, every
from reflow.db.repo import PageParams
from reflow.errors import ReflowError
from reflow.services import (
    destination_objects,
    destination_types,
    destinations,
    models,
    source_catalog,
    sources,
)

router = APIRouter(route_class=ConsoleRoute)


@dataclass(frozen=True)
class Kind:
    """What differs between the source and the destination pages."""

    name: str  # "source" | "destination"
    plural: str
    title: str

    @property
    def base(self) -> str:
        return f"/{self.plural}"


SOURCE = Kind("source", "sources", "Sources")
DESTINATION = Kind("destination", "destinations", "Destinations")


def _types(ui: Console, kind: Kind) -> dict[str, type]:
    if kind is SOURCE:
        return dict(registry.source_types())
    return destination_types.catalogue(ui.session, workspace_id=ui.workspace_id, vault=ui.vault)


def _rows(ui: Console, kind: Kind) -> list[Any]:
    service = sources if kind is SOURCE else destinations
    return every(lambda p: service.list_(ui.session, workspace_id=ui.workspace_id, params=p))


def _get(ui: Console, kind: Kind, row_id: int) -> Any:
    if kind is SOURCE:
        return sources.get(ui.session, workspace_id=ui.workspace_id, source_id=row_id)
    return destinations.get(ui.session, workspace_id=ui.workspace_id, destination_id=row_id)


def _list(ui: Console, kind: Kind) -> Response:
    return ui.page("connections.html", kind=kind, rows=_rows(ui, kind))


def _new(ui: Console, kind: Kind, type_name: str | None) -> Response:
    types = _types(ui, kind)
    if not type_name or type_name not in types:
        return ui.page("connection_types.html", kind=kind, types=types)
    return _form(ui, kind, type_name, types[type_name], {}, {})


def _form(ui: Console, kind: Kind, type_name: str, cls: type, values: dict[str, str],
          errors: dict[str, str], status: int = 200,
          steps: list[dict[str, Any]] | None = None) -> Response:
    fields = forms.credential_fields(cls.config_model)  # type: ignore[attr-defined]
    for field in fields:
        field["value"] = "" if field["is_password_type_field"] else values.get(
            field["input_name"], forms.shown_value(field, None))
    return ui.page("connection_form.html", status=status, kind=kind, type_name=type_name,
                   label=getattr(cls, "label", type_name), fields=fields, errors=errors,
                   name=values.get("name", ""), steps=steps or [])


def _create(ui: Console, kind: Kind, form: dict[str, str]) -> Response:
    ui.require("editor")
    types = _types(ui, kind)
    type_name = form.get("type", "")
    if type_name not in types:
        return _new(ui, kind, None)
    cls = types[type_name]
    fields = forms.credential_fields(cls.config_model)  # type: ignore[attr-defined]
    known = {f["id"] for f in fields} | {"name"}
    try:
        row = _save(ui, kind, type_name, forms.parse_credentials(fields, form),
                    form.get("name", "").strip() or None)
    except ReflowError as exc:
        ui.session.rollback()
        return _form(ui, kind, type_name, cls, form, forms.field_errors(exc.message, known),
                     status=400)
    if not row.last_test_succeeded:
        steps = (row.last_test_results or {}).get("steps", [])
        ui.session.rollback()  # a connection that does not work is not kept
        return _form(ui, kind, type_name, cls, form, forms.test_errors(steps, known), status=400,
                     steps=steps)
    ui.session.commit()
    return RedirectResponse(f"{kind.base}/{row.id}", status_code=303)


def _save(ui: Console, kind: Kind, type_name: str, credentials: dict[str, Any],
          name: str | None) -> Any:
    if kind is SOURCE:
        return sources.create(ui.session, workspace_id=ui.workspace_id, vault=ui.vault,
                              type=type_name, credentials=credentials, name=name)
    row = destinations.create(ui.session, workspace_id=ui.workspace_id, vault=ui.vault,
                              type=type_name, credentials=credentials, name=name)
    if row.last_test_succeeded:
        destination_objects.refresh_after_change(ui.session, runtime=ui.runtime, destination=row)
    return row


def _retest(ui: Console, kind: Kind, row_id: int) -> Response:
    ui.require("editor")
    row = _get(ui, kind, row_id)
    if kind is SOURCE:
        sources.update(ui.session, source=row, vault=ui.vault, changes={})
    else:
        destinations.update(ui.session, destination=row, vault=ui.vault, changes={})
    ui.session.commit()
    return RedirectResponse(f"{kind.base}/{row_id}", status_code=303)


@router.get("/sources")
def list_sources(ui: Console = Depends(console)) -> Response:
    return _list(ui, SOURCE)


@router.get("/destinations")
def list_destinations(ui: Console = Depends(console)) -> Response:
    return _list(ui, DESTINATION)


@router.get("/sources/new")
def new_source(type: str | None = Query(None), ui: Console = Depends(console)) -> Response:
    return _new(ui, SOURCE, type)


@router.get("/destinations/new")
def new_destination(type: str | None = Query(None), ui: Console = Depends(console)) -> Response:
    return _new(ui, DESTINATION, type)


@router.post("/sources/new")
def create_source(form: dict[str, str] = Depends(checked_form),
                  ui: Console = Depends(console)) -> Response:
    return _create(ui, SOURCE, form)


@router.post("/destinations/new")
def create_destination(form: dict[str, str] = Depends(checked_form),
                       ui: Console = Depends(console)) -> Response:
    return _create(ui, DESTINATION, form)


@router.post("/sources/{source_id}/test")
def test_source(source_id: int, _: dict[str, str] = Depends(checked_form),
                ui: Console = Depends(console)) -> Response:
    return _retest(ui, SOURCE, source_id)


@router.post("/destinations/{destination_id}/test")
def test_destination(destination_id: int, _: dict[str, str] = Depends(checked_form),
                     ui: Console = Depends(console)) -> Response:
    return _retest(ui, DESTINATION, destination_id)


@router.get("/sources/{source_id}")
def source_detail(source_id: int, ui: Console = Depends(console)) -> Response:
    source = sources.get(ui.session, workspace_id=ui.workspace_id, source_id=source_id)
    tables = source_catalog.list_tables(ui.session, runtime=ui.runtime, source=source,
                                        params=PageParams(1, 100, "asc"))
    ui.session.commit()  # the first visit starts loading the table list, as the API does
    source_models = models.list_(ui.session, source=source, params=PageParams(1, 100, "asc"))
    return ui.page("source.html", kind=SOURCE, row=source, tables=tables.page.items,
                   tables_total=tables.page.total, refreshed=tables.last_refreshed_at,
                   models=source_models.items)


@router.get("/sources/{source_id}/tables/{table_id}")
def source_table(source_id: int, table_id: int, ui: Console = Depends(console)) -> Response:
    source = sources.get(ui.session, workspace_id=ui.workspace_id, source_id=source_id)
    table = source_catalog.get_table(ui.session, source=source, table_id=table_id)
    table = source_catalog.ensure_columns(ui.session, source=source, vault=ui.vault, table=table)
    ui.session.commit()
    return ui.page("source_table.html", row=source, table=table)


@router.get("/destinations/{destination_id}")
def destination_detail(destination_id: int, ui: Console = Depends(console)) -> Response:
    destination = _get(ui, DESTINATION, destination_id)
    objects = destination_objects.cached(ui.session, destination_id=destination.id)
    return ui.page("destination.html", kind=DESTINATION, row=destination, objects=objects)


@router.get("/destinations/{destination_id}/objects/{full_name:path}")
def destination_object(destination_id: int, full_name: str,
                       ui: Console = Depends(console)) -> Response:
    destination = _get(ui, DESTINATION, destination_id)
    obj = destinations.get_object(destination, vault=ui.vault, full_name=full_name)
    return ui.page("destination_object.html", row=destination, obj=obj)
