"""Destination object refreshes, object types and object creation; custom destination
types (``POST /connectors``).

Included before the destinations router: its ``/objects/{full_name:path}`` would
otherwise swallow ``/objects/{full_name}/refresh_fields_status``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api import render
from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import bare, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import ConnectorCreate, ObjectCreationRequest
from reflow.api.schemas.responses import (
    DestinationTypeRead,
    Envelope,
    Json,
    ListEnvelope,
    ObjectCreated,
    ObjectTypeRead,
    RefreshKey,
    RefreshStatus,
)
from reflow.connectors.base import ObjectType
from reflow.db.repo import Page, PageParams
from reflow.errors import NotFound
from reflow.services import destination_objects, destination_types, destinations

router = APIRouter(tags=["destinations"])


def render_object_type(kind: ObjectType) -> dict[str, Any]:
    def attr(a: Any) -> dict[str, Any]:
        out = {"key": a.key, "label": a.label, "type": a.type, "required": a.required}
        if a.hint is not None:
            out["hint"] = a.hint
        if a.possible_values is not None:
            out["possible_values"] = list(a.possible_values)
        return out

    return {
        "type": kind.type,
        "object_attributes": [attr(a) for a in kind.object_attributes],
        "field_attributes": [attr(a) for a in kind.field_attributes],
    }


def _types_listing(request: Request, cls: type, params: PageParams) -> JSONResponse:
    kinds = destination_objects.object_types(cls)
    start = (params.page - 1) * params.per_page
    page = Page(kinds[start : start + params.per_page], len(kinds), params)
    return listing(request, page, [render_object_type(k) for k in page.items])


@router.post("/connectors", status_code=201, response_model=Envelope[DestinationTypeRead])
def create_connector(
    body: dict[str, Any] = Depends(body_of(ConnectorCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    row = destination_types.register(
        ctx.session, workspace_id=ctx.workspace_id, vault=ctx.vault, body=body
    )
    cls = destination_types.connector_class(row, ctx.vault)
    ctx.commit()
    return ok(render.destination_type(cls), "created", 201)


@router.get("/connectors/{service_name}/object_types", response_model=ListEnvelope[ObjectTypeRead])
def list_connector_object_types(
    service_name: str,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    catalogue = destination_types.catalogue(
        ctx.session, workspace_id=ctx.workspace_id, vault=ctx.vault
    )
    cls = catalogue.get(service_name)
    if cls is None:
        raise NotFound(f"destination type {service_name!r} not found")
    return _types_listing(request, cls, params)


def _destination(ctx: WorkspaceContext, destination_id: Int64) -> Any:
    return destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )


@router.get(
    "/destinations/{destination_id}/object_types",
    response_model=ListEnvelope[ObjectTypeRead],
)
def list_destination_object_types(
    destination_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    destination = _destination(ctx, destination_id)
    cls = destinations.connector_class(destination, vault=ctx.vault)
    return _types_listing(request, cls, params)


@router.post(
    "/destinations/{destination_id}/object_creation_requests", status_code=201,
    response_model=ObjectCreated,
)
def create_object(
    destination_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(ObjectCreationRequest)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """201 with a ``url`` that this server answers (Census' documented URL names another
    host and a hyphenated path no endpoint serves)."""
    destination = _destination(ctx, destination_id)
    cls = destinations.connector_class(destination, vault=ctx.vault)
    creation = destination_objects.creation_request(cls, body)
    job = destination_objects.start(
        ctx.session,
        runtime=ctx.runtime,
        destination=destination,
        kind="create_object",
        request=creation,
    )
    ctx.commit()
    url = str(
        request.url_for(
            "get_object_creation_request", destination_id=destination_id, request_id=job.id
        )
    )
    return JSONResponse(
        {"status": "created", "url": url, "data": {"id": job.id, "status": job.status}},
        status_code=201,
    )


@router.get(
    "/destinations/{destination_id}/object_creation_requests/{request_id}",
    name="get_object_creation_request",
    response_model=Envelope[Json],
)
def get_object_creation_request(
    destination_id: Int64, request_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    destination = _destination(ctx, destination_id)
    job = destination_objects.get_job(
        ctx.session, destination=destination, refresh_key=request_id, kind="create_object"
    )
    data = destination_objects.creation_status(ctx.session, job)
    if data["object"] is not None:
        data["object"] = render.destination_object(data["object"])
    return ok(data)


@router.post("/destinations/{destination_id}/refresh_objects", response_model=RefreshKey)
def refresh_objects(
    destination_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    destination = _destination(ctx, destination_id)
    job = destination_objects.start(
        ctx.session, runtime=ctx.runtime, destination=destination, kind="refresh_objects"
    )
    ctx.commit()
    return bare({"refresh_key": job.id})


@router.get("/destinations/{destination_id}/refresh_objects_status", response_model=RefreshStatus)
def refresh_objects_status(
    destination_id: Int64,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    destination = _destination(ctx, destination_id)
    job = destination_objects.get_job(
        ctx.session, destination=destination, refresh_key=refresh_key, kind="refresh_objects"
    )
    body, code = destination_objects.status_body(job)
    return bare(body, code)


@router.post(
    "/destinations/{destination_id}/objects/{full_name:path}/refresh_fields",
    response_model=RefreshKey,
)
def refresh_fields(
    destination_id: Int64, full_name: str, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    destination = _destination(ctx, destination_id)
    job = destination_objects.start(
        ctx.session,
        runtime=ctx.runtime,
        destination=destination,
        kind="refresh_fields",
        object_full_name=full_name,
    )
    ctx.commit()
    return bare({"refresh_key": job.id})


@router.get(
    "/destinations/{destination_id}/objects/{full_name:path}/refresh_fields_status",
    response_model=RefreshStatus,
)
def refresh_fields_status(
    destination_id: Int64,
    full_name: str,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    destination = _destination(ctx, destination_id)
    job = destination_objects.get_job(
        ctx.session,
        destination=destination,
        refresh_key=refresh_key,
        kind="refresh_fields",
        object_full_name=full_name,
    )
    body, code = destination_objects.status_body(job)
    return bare(body, code)
