"""Datasets (§8): SQL datasets are models seen through ``/datasets``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api import render_sources
from reflow.api.deps import (
    WorkspaceContext,
    body_of,
    check_query_length,
    workspace_context,
)
from reflow.api.envelope import bare, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import DatasetCreate, DatasetUpdate
from reflow.api.schemas.responses import (
    DatasetRead,
    Deleted,
    Envelope,
    ListEnvelope,
    RefreshKey,
    RefreshStatus,
)
from reflow.db.repo import PageParams
from reflow.db.tables import Source
from reflow.services import datasets, refresh

router = APIRouter(tags=["datasets"])


@router.post("/datasets", status_code=201, response_model=Envelope[DatasetRead])
def create_dataset(
    body: dict[str, Any] = Depends(body_of(DatasetCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    check_query_length(body, ctx)
    dataset = datasets.create(
        ctx.session, workspace_id=ctx.workspace_id, vault=ctx.vault, body=body
    )
    ctx.commit()
    return ok(render_sources.dataset(dataset), "created", 201)


@router.get("/datasets", response_model=ListEnvelope[DatasetRead])
def list_datasets(
    request: Request,
    type: str | None = Query(None, description="Only datasets of this type (sql)."),
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    page = datasets.list_(ctx.session, workspace_id=ctx.workspace_id, params=params, type=type)
    return listing(request, page, [render_sources.dataset(d) for d in page.items])


@router.get("/datasets/{dataset_id}", response_model=Envelope[DatasetRead])
def get_dataset(
    dataset_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    dataset = datasets.get(ctx.session, workspace_id=ctx.workspace_id, dataset_id=dataset_id)
    return ok(render_sources.dataset(dataset))


@router.patch("/datasets/{dataset_id}", response_model=Envelope[DatasetRead])
def update_dataset(
    dataset_id: Int64,
    body: dict[str, Any] = Depends(body_of(DatasetUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    dataset = datasets.get(ctx.session, workspace_id=ctx.workspace_id, dataset_id=dataset_id)
    check_query_length(body, ctx)
    dataset = datasets.update(ctx.session, dataset=dataset, vault=ctx.vault, body=body)
    ctx.commit()
    return ok(render_sources.dataset(dataset), "updated")


@router.delete("/datasets/{dataset_id}", response_model=Deleted)
def delete_dataset(
    dataset_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    dataset = datasets.get(ctx.session, workspace_id=ctx.workspace_id, dataset_id=dataset_id)
    datasets.delete(ctx.session, dataset=dataset)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


@router.post("/datasets/{dataset_id}/refresh_columns", response_model=RefreshKey)
def refresh_dataset_columns(
    dataset_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    dataset = datasets.get(ctx.session, workspace_id=ctx.workspace_id, dataset_id=dataset_id)
    source = ctx.session.get(Source, dataset.source_id)
    assert source is not None  # a dataset's source_id is a non-null foreign key
    job = refresh.start(
        ctx.session, runtime=ctx.runtime, source=source, kind="model_columns", target_id=dataset.id
    )
    ctx.commit()
    return bare({"refresh_key": job.id})


@router.get("/datasets/{dataset_id}/refresh_columns_status", response_model=RefreshStatus)
def refresh_dataset_columns_status(
    dataset_id: Int64,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    dataset = datasets.get(ctx.session, workspace_id=ctx.workspace_id, dataset_id=dataset_id)
    source = ctx.session.get(Source, dataset.source_id)
    assert source is not None  # a dataset's source_id is a non-null foreign key
    job = refresh.get(
        ctx.session,
        source=source,
        refresh_key=refresh_key,
        kind="model_columns",
        target_id=dataset.id,
    )
    body, code = refresh.status_body(job)
    return bare(body, code)
