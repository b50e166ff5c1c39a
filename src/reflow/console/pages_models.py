"""Models: a SQL editor with a preview of the first 50 rows and their column types."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse, Response

from reflow.console import forms
from reflow.console.deps import Console, ConsoleRoute, checked_form, console, every
from reflow.db.repo import get_scoped
from reflow.db.tables import Source, SourceModel
from reflow.errors import ReflowError
from reflow.services import models, previews, sources

router = APIRouter(route_class=ConsoleRoute)
FIELDS = {"source_id", "name", "query", "description"}


def _sources(ui: Console) -> list[Source]:
    return every(lambda p: sources.list_(ui.session, workspace_id=ui.workspace_id, params=p))


def model_of(ui: Console, model_id: int) -> tuple[SourceModel, Source]:
    row = get_scoped(ui.session, SourceModel, model_id, ui.workspace_id, "model")
    source = sources.get(ui.session, workspace_id=ui.workspace_id, source_id=row.source_id)
    return models.get(ui.session, source=source, model_id=model_id), source


@router.get("/models")
def list_models(ui: Console = Depends(console)) -> Response:
    rows = [(s, m) for s in _sources(ui) for m in _models_of(ui, s)]
    return ui.page("models.html", rows=rows)


def _models_of(ui: Console, source: Source) -> list[SourceModel]:
    return every(lambda p: models.list_(ui.session, source=source, params=p))


def _editor(ui: Console, values: dict[str, str], *, model: SourceModel | None = None,
            preview: previews.Preview | None = None, errors: dict[str, str] | None = None,
            status: int = 200) -> Response:
    return ui.page("model_form.html", status=status, sources=_sources(ui), values=values,
                   model=model, preview=preview, errors=errors or {})


@router.get("/models/new")
def new_model(source_id: str = Query(""), ui: Console = Depends(console)) -> Response:
    return _editor(ui, {"source_id": source_id, "name": "", "query": "", "description": ""})


def _source_of(ui: Console, form: dict[str, str]) -> Source:
    raw = form.get("source_id", "")
    if not raw.isdigit():
        raise ReflowError("source_id: choose a source")
    return sources.get(ui.session, workspace_id=ui.workspace_id, source_id=int(raw))


def _submit(ui: Console, form: dict[str, str], model: SourceModel | None) -> Response:
    """``action=preview`` runs the query and shows 50 rows; ``action=save`` stores it."""
    ui.require("editor")
    try:
        source = model and ui.session.get(Source, model.source_id) or _source_of(ui, form)
        assert source is not None
        if form.get("action") == "preview":
            shown = previews.preview(source, vault=ui.vault, query=form.get("query", ""))
            return _editor(ui, form, model=model, preview=shown)
        saved = _save(ui, source, form, model)
    except ReflowError as exc:
        ui.session.rollback()
        return _editor(ui, form, model=model, errors=forms.field_errors(exc.message, FIELDS),
                       status=400)
    ui.session.commit()
    return RedirectResponse(f"/models/{saved.id}", status_code=303)


def _save(ui: Console, source: Source, form: dict[str, str],
          model: SourceModel | None) -> SourceModel:
    name, query = form.get("name", "").strip(), form.get("query", "")
    if not name:
        raise ReflowError("name: a model needs a name")
    description = form.get("description", "").strip() or None
    if model is None:
        return models.create(ui.session, source=source, vault=ui.vault, name=name, query=query,
                             description=description)
    changes: dict[str, Any] = {"name": name, "query": query, "description": description}
    return models.update(ui.session, model=model, source=source, vault=ui.vault, changes=changes)


@router.post("/models/new")
def create_model(form: dict[str, str] = Depends(checked_form),
                 ui: Console = Depends(console)) -> Response:
    return _submit(ui, form, None)


@router.get("/models/{model_id}")
def model_detail(model_id: int, preview: bool = Query(False),
                 ui: Console = Depends(console)) -> Response:
    model, source = model_of(ui, model_id)
    values = {"source_id": str(source.id), "name": model.name, "query": model.query,
              "description": model.description or ""}
    shown = previews.preview(source, vault=ui.vault, query=model.query) if preview else None
    return _editor(ui, values, model=model, preview=shown)


@router.post("/models/{model_id}")
def update_model(model_id: int, form: dict[str, str] = Depends(checked_form),
                 ui: Console = Depends(console)) -> Response:
    model, _ = model_of(ui, model_id)
    return _submit(ui, form, model)
