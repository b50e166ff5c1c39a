"""A source's tables and columns, its objects, and the refresh endpoints (§4.6–§7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api import render, render_sources
from reflow.api.deps import WorkspaceContext, workspace_context
from reflow.api.envelope import bare, iso, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.responses import (
    ColumnRead,
    Envelope,
    ListEnvelope,
    RefreshKey,
    RefreshStatus,
    SourceObjectRead,
    TableObjectRead,
    TableRead,
)
from reflow.db.repo import Page, PageParams
from reflow.errors import BadRequest
from reflow.services import models, refresh, source_catalog, sources

router = APIRouter(tags=["sources"])


def _source(ctx: WorkspaceContext, source_id: Int64) -> Any:
    return sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)


def _refresh(
    ctx: WorkspaceContext, source: Any, kind: str, target_id: int | None = None
) -> JSONResponse:
    job = refresh.start(
        ctx.session, runtime=ctx.runtime, source=source, kind=kind, target_id=target_id
    )
    ctx.commit()
    return bare({"refresh_key": job.id})


def _status(
    ctx: WorkspaceContext, source: Any, key: Any, kind: str, target_id: int | None = None
) -> JSONResponse:
    job = refresh.get(ctx.session, source=source, refresh_key=key, kind=kind, target_id=target_id)
    body, code = refresh.status_body(job)
    return bare(body, code)


@router.get("/sources/{source_id}/tables", response_model=ListEnvelope[TableRead])
def list_tables(
    source_id: Int64,
    request: Request,
    search: str | None = Query(
        None, description="Case-insensitive match on name, schema, catalog."
    ),
    order_by: str | None = Query(None, description="e.g. table_schema:desc,table_name:asc"),
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    result = source_catalog.list_tables(
        ctx.session,
        runtime=ctx.runtime,
        source=_source(ctx, source_id),
        params=params,
        search=search,
        order_by=order_by,
    )
    ctx.commit()
    data = [render_sources.table_item(t) for t in result.page.items]
    return listing(request, result.page, data, last_refreshed_at=iso(result.last_refreshed_at))


@router.get("/sources/{source_id}/tables/columns", response_model=ListEnvelope[ColumnRead])
def list_columns(
    source_id: Int64,
    request: Request,
    table_catalog: str | None = Query(None),
    table_schema: str | None = Query(None),
    table_name: str | None = Query(None),
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = _source(ctx, source_id)
    locator = {
        "table_catalog": table_catalog,
        "table_schema": table_schema,
        "table_name": table_name,
    }
    for name, value in locator.items():
        if value is None:
            raise BadRequest(f"{name} is required")
    table = source_catalog.table_by_locator(
        ctx.session,
        source=source,
        vault=ctx.vault,
        catalog=table_catalog or "",
        schema=table_schema or "",
        name=table_name or "",
    )
    ctx.commit()
    columns = table.columns or []
    start = (params.page - 1) * params.per_page
    page = Page(columns[start : start + params.per_page], len(columns), params)
    data = [render_sources.column(c) for c in page.items]
    return listing(request, page, data, last_refreshed_at=iso(table.columns_refreshed_at))


@router.get(
    "/sources/{source_id}/tables/{table_id}", response_model=Envelope[TableObjectRead]
)
def get_table(
    source_id: Int64, table_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    source = _source(ctx, source_id)
    table = source_catalog.get_table(ctx.session, source=source, table_id=table_id)
    table = source_catalog.ensure_columns(ctx.session, source=source, vault=ctx.vault, table=table)
    ctx.commit()
    return ok(render_sources.table_object(table, with_columns=True))


@router.post("/sources/{source_id}/refresh_tables", response_model=RefreshKey)
def refresh_tables(
    source_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return _refresh(ctx, _source(ctx, source_id), "tables")


@router.get("/sources/{source_id}/refresh_tables_status", response_model=RefreshStatus)
def refresh_tables_status(
    source_id: Int64,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    return _status(ctx, _source(ctx, source_id), refresh_key, "tables")


@router.post("/sources/{source_id}/tables/{table_id}/refresh_columns", response_model=RefreshKey)
def refresh_table_columns(
    source_id: Int64, table_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    source = _source(ctx, source_id)
    table = source_catalog.get_table(ctx.session, source=source, table_id=table_id)
    return _refresh(ctx, source, "table_columns", table.id)


@router.get(
    "/sources/{source_id}/tables/{table_id}/refresh_columns_status",
    response_model=RefreshStatus,
)
def refresh_table_columns_status(
    source_id: Int64,
    table_id: Int64,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = _source(ctx, source_id)
    table = source_catalog.get_table(ctx.session, source=source, table_id=table_id)
    return _status(ctx, source, refresh_key, "table_columns", table.id)


@router.post("/sources/{source_id}/models/{model_id}/refresh_columns", response_model=RefreshKey)
def refresh_model_columns(
    source_id: Int64, model_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    source = _source(ctx, source_id)
    model = models.get(ctx.session, source=source, model_id=model_id)
    return _refresh(ctx, source, "model_columns", model.id)


@router.get(
    "/sources/{source_id}/models/{model_id}/refresh_columns_status",
    response_model=RefreshStatus,
)
def refresh_model_columns_status(
    source_id: Int64,
    model_id: Int64,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = _source(ctx, source_id)
    model = models.get(ctx.session, source=source, model_id=model_id)
    return _status(ctx, source, refresh_key, "model_columns", model.id)


@router.get(
    "/sources/{source_id}/objects", response_model=ListEnvelope[SourceObjectRead]
)
def list_source_objects(
    source_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    page = source_catalog.list_objects(
        ctx.session, runtime=ctx.runtime, source=_source(ctx, source_id), params=params
    )
    ctx.commit()
    renderers: dict[str, Callable[[Any], dict[str, Any]]] = {
        "table": render_sources.table_object,
        "model": render.model,
        "segment": render_sources.segment,
    }
    return listing(request, page, [renderers[kind](row) for kind, row in page.items])
