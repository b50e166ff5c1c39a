"""Reflow extension: the register of objects a config-as-code project manages
(``reflow apply`` writes it, ``reflow export``/``plan`` read it). Not a Census resource."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import ok
from reflow.api.schemas.common import Envelope, Int64
from reflow.api.schemas.requests import ManagedObjectMark
from reflow.api.schemas.responses import Deleted, ManagedObjectRead
from reflow.services import managed

router = APIRouter(tags=["managed objects"])


@router.get("/managed_objects", response_model=Envelope[list[ManagedObjectRead]])
def list_managed(ctx: WorkspaceContext = Depends(workspace_context)) -> JSONResponse:
    rows = managed.list_(ctx.session, workspace_id=ctx.workspace_id)
    return ok([managed.render(r) for r in rows])


@router.put("/managed_objects/{kind}/{object_id}", response_model=Envelope[ManagedObjectRead])
def register_managed(
    kind: str,
    object_id: Int64,
    body: dict[str, Any] = Depends(body_of(ManagedObjectMark)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    row = managed.register(
        ctx.session, workspace_id=ctx.workspace_id, kind=kind, object_id=object_id, body=body
    )
    ctx.commit()
    return ok(managed.render(row))


@router.delete("/managed_objects/{kind}/{object_id}", response_model=Deleted)
def unregister_managed(
    kind: str, object_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    managed.unregister(ctx.session, workspace_id=ctx.workspace_id, kind=kind, object_id=object_id)
    ctx.commit()
    return JSONResponse({"status": "deleted"})
