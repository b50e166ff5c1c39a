"""Syncs and sync runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api import render
from reflow.api.deps import WorkspaceContext, body_of, polled_read, workspace_context
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import SyncCreate, SyncTrigger, SyncUpdate
from reflow.api.schemas.responses import (
    Deleted,
    Envelope,
    Json,
    ListEnvelope,
    SyncRead,
    SyncRunCreated,
    SyncRunRead,
    SyncValidated,
)
from reflow.db.engine import after_commit
from reflow.db.repo import PageParams
from reflow.errors import BadRequest
from reflow.services import managed, runs, syncs
from reflow.services.listing import SyncItem, sync_item, sync_items

router = APIRouter(tags=["syncs"])


def _render_sync(item: SyncItem) -> dict[str, Any]:
    """GET /syncs, GET /syncs/{id} and PATCH /syncs/{id} render a sync this one way."""
    rendered = render.sync(item.sync, source_object=item.source_object,
                           last_run=item.last_run)
    return managed.annotate(rendered, item.mark)


# The reads clients poll come first: FastAPI matches a request against the routes in
# order (twice: to pick the router, then the route), at a few microseconds each.


@router.get("/sync_runs/{run_id}", response_model=Envelope[SyncRunRead])
@polled_read
def get_sync_run(run_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)) -> JSONResponse:
    return ok(render.sync_run(runs.read(ctx.session, workspace_id=ctx.workspace_id,
                                        run_id=run_id)))


@router.get("/syncs/{sync_id}", response_model=Envelope[SyncRead])
@polled_read
def get_sync(sync_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)) -> JSONResponse:
    return ok(_render_sync(sync_item(ctx.session, workspace_id=ctx.workspace_id,
                                     sync_id=sync_id)))


@router.get("/syncs", response_model=ListEnvelope[SyncRead])
@polled_read
def list_syncs(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    # A fixed number of statements a page (services/listing.py).
    page = sync_items(ctx.session, workspace_id=ctx.workspace_id, params=params)
    return listing(request, page, [_render_sync(item) for item in page.items])


@router.post("/syncs", response_model=SyncValidated)
def create_sync(
    body: dict[str, Any] = Depends(body_of(SyncCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """200 with ``{"sync_id": N}``, as Census answers (its demo app checks the code)."""
    sync = syncs.create(ctx.session, workspace_id=ctx.workspace_id, vault=ctx.vault, body=body)
    if sync is None:
        return JSONResponse({"status": "success", "message": "the sync configuration is valid"})
    ctx.commit()
    return ok({"sync_id": sync.id}, "created")


@router.patch("/syncs/{sync_id}", response_model=Envelope[SyncRead])
def update_sync(
    sync_id: Int64,
    body: dict[str, Any] = Depends(body_of(SyncUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    sync = syncs.get(ctx.session, workspace_id=ctx.workspace_id, sync_id=sync_id)
    sync = syncs.update(ctx.session, sync=sync, vault=ctx.vault, body=body)
    ctx.commit()
    return ok(_render_sync(sync_item(ctx.session, workspace_id=ctx.workspace_id,
                                     sync_id=sync.id)), "updated")


@router.delete("/syncs/{sync_id}", response_model=Deleted)
def delete_sync(sync_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)) -> JSONResponse:
    sync = syncs.get(ctx.session, workspace_id=ctx.workspace_id, sync_id=sync_id)
    syncs.delete(ctx.session, sync=sync, runtime=ctx.runtime)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


@router.post("/syncs/{sync_id}/trigger", response_model=Envelope[SyncRunCreated])
def trigger_sync(
    sync_id: Int64,
    force_full_sync: bool | None = Query(None, description="Resend every record."),
    body: dict[str, Any] = Depends(body_of(SyncTrigger)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """``force_full_sync`` as a query parameter (documented) or JSON body (dagster)."""
    full = force_full_sync if force_full_sync is not None else body.get("force_full_sync", False)
    if not isinstance(full, bool):
        raise BadRequest("force_full_sync must be a boolean")
    sync = syncs.get(ctx.session, workspace_id=ctx.workspace_id, sync_id=sync_id)
    run = runs.trigger(ctx.session, sync=sync, force_full_sync=full)
    if run.status == "queued":
        run_id = run.id
        after_commit(ctx.session, lambda: ctx.runtime.enqueue(run_id))
    ctx.commit()
    return ok({"sync_run_id": run.id})


@router.get("/syncs/{sync_id}/sync_runs", response_model=ListEnvelope[SyncRunRead])
@polled_read
def list_sync_runs(
    sync_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    sync = syncs.get(ctx.session, workspace_id=ctx.workspace_id, sync_id=sync_id)
    page = runs.list_for_sync(ctx.session, sync=sync, params=params)
    return listing(request, page, [render.sync_run(r) for r in page.items])


@router.post("/sync_runs/{run_id}/cancel", response_model=Envelope[Json])
def cancel_sync_run(
    run_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    run = runs.get(ctx.session, workspace_id=ctx.workspace_id, run_id=run_id)
    runs.request_cancel(ctx.session, run=run)
    ctx.commit()
    return ok({}, "cancelled")
