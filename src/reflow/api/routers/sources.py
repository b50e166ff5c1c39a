"""Sources, their objects, tables and models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from reflow.api import render
from reflow.api.deps import (
    WorkspaceContext,
    body_of,
    check_query_length,
    workspace_context,
)
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import ModelCreate, ModelUpdate, SourceCreate, SourceUpdate
from reflow.api.schemas.responses import Deleted, Envelope, ListEnvelope, ModelRead, SourceRead
from reflow.db.repo import PageParams
from reflow.errors import BadRequest
from reflow.services import connections, managed, models, refresh, segments, sources

router = APIRouter(tags=["sources"])


def _connection(body: dict[str, Any]) -> dict[str, Any]:
    return connections.connection_object(body, "connection")


def _marked(ctx: WorkspaceContext, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Extra keys ``slug``/``managed_by``: what a config-as-code project manages."""
    return managed.annotated(ctx.session, workspace_id=ctx.workspace_id, kind=kind, items=items)


@router.post("/sources", status_code=201, response_model=Envelope[SourceRead])
def create_source(
    body: dict[str, Any] = Depends(body_of(SourceCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    conn = _connection(body)
    source = sources.create(
        ctx.session,
        workspace_id=ctx.workspace_id,
        vault=ctx.vault,
        type=conn.get("type"),
        credentials=conn.get("credentials"),
        name=conn.get("name"),
        label=conn.get("label"),
        sync_engine=conn.get("sync_engine"),
        read_only_connection=conn.get("read_only_connection"),
        warehouse_writeback_retention_in_days=conn.get("warehouse_writeback_retention_in_days"),
    )
    ctx.commit()
    return ok(render.source(source), "created", 201)


@router.get("/sources", response_model=ListEnvelope[SourceRead])
def list_sources(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    page = sources.list_(ctx.session, workspace_id=ctx.workspace_id, params=params)
    items = [render.source(s) for s in page.items]
    return listing(request, page, _marked(ctx, "source", items))


@router.get("/sources/{source_id}", response_model=Envelope[SourceRead])
def get_source(
    source_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    return ok(_marked(ctx, "source", [render.source(source)])[0])


@router.patch("/sources/{source_id}", response_model=Envelope[SourceRead])
def update_source(
    source_id: Int64,
    body: dict[str, Any] = Depends(body_of(SourceUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    source = sources.update(ctx.session, source=source, vault=ctx.vault, changes=_connection(body))
    ctx.commit()
    return ok(render.source(source), "updated")


@router.delete("/sources/{source_id}", response_model=Deleted)
def delete_source(
    source_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    sources.delete(ctx.session, source=source)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


@router.post("/sources/{source_id}/models", status_code=201, response_model=Envelope[ModelRead])
def create_model(
    source_id: Int64,
    body: dict[str, Any] = Depends(body_of(ModelCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    check_query_length(body, ctx)
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    for field in ("name", "query"):
        if not isinstance(body.get(field), str) or not body[field].strip():
            raise BadRequest(f"{field} is required and must be a non-empty string")
    if body.get("description") is not None and not isinstance(body["description"], str):
        raise BadRequest("description must be a string")
    if body.get("validate_only") is True:  # as POST /syncs: check, store nothing
        models.check_query(source=source, vault=ctx.vault, query=body["query"])
        return JSONResponse({"status": "success", "message": "the model is valid"})
    model = models.create(
        ctx.session,
        source=source,
        vault=ctx.vault,
        name=body["name"],
        query=body["query"],
        description=body.get("description"),
    )
    ctx.commit()
    return ok(render.model(model), "created", 201)


@router.get("/sources/{source_id}/models", response_model=ListEnvelope[ModelRead])
def list_models(
    source_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    page = models.list_(ctx.session, source=source, params=params)
    return listing(request, page, _marked(ctx, "model", [render.model(m) for m in page.items]))


@router.get("/sources/{source_id}/models/{model_id}", response_model=Envelope[ModelRead])
def get_model(
    source_id: Int64, model_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    model = models.get(ctx.session, source=source, model_id=model_id)
    return ok(_marked(ctx, "model", [render.model(model)])[0])


@router.patch("/sources/{source_id}/models/{model_id}", response_model=Envelope[ModelRead])
def update_model(
    source_id: Int64,
    model_id: Int64,
    body: dict[str, Any] = Depends(body_of(ModelUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    model = models.get(ctx.session, source=source, model_id=model_id)
    check_query_length(body, ctx)
    for field in ("name", "query", "description"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise BadRequest(f"{field} must be a string")
    model = models.update(ctx.session, model=model, source=source, vault=ctx.vault, changes=body)
    # Census answers a model PATCH with a refresh_key for its column re-introspection.
    job = refresh.start(ctx.session, runtime=ctx.runtime, source=source, kind="model_columns",
                        target_id=model.id)
    ctx.commit()
    return ok(render.model(model), "updated", refresh_key=job.id)


@router.delete("/sources/{source_id}/models/{model_id}", response_model=Deleted)
def delete_model(
    source_id: Int64, model_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    model = models.get(ctx.session, source=source, model_id=model_id)
    segments.ensure_model_unused(ctx.session, model=model)
    models.delete(ctx.session, model=model)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


# GET /sources/{source_id}/objects lives in routers/source_catalog.py (tables, models, segments).
