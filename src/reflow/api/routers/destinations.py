"""Destinations and their objects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from reflow.api import render
from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import DestinationCreate, DestinationUpdate
from reflow.api.schemas.responses import (
    Deleted,
    DestinationObjectRead,
    DestinationRead,
    Envelope,
    ListEnvelope,
)
from reflow.db.repo import Page, PageParams
from reflow.errors import BadRequest
from reflow.services import connections, destination_objects, destinations, managed

router = APIRouter(tags=["destinations"])


def _service_connection(body: dict[str, Any]) -> dict[str, Any]:
    conn = connections.connection_object(body, "service_connection")
    if conn.get("name") is not None and not isinstance(conn["name"], str):
        raise BadRequest("service_connection.name must be a string")
    return conn


@router.post("/destinations", status_code=201, response_model=Envelope[DestinationRead])
def create_destination(
    body: dict[str, Any] = Depends(body_of(DestinationCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    conn = _service_connection(body)
    destination = destinations.create(
        ctx.session,
        workspace_id=ctx.workspace_id,
        vault=ctx.vault,
        type=conn.get("type"),
        credentials=conn.get("credentials"),
        name=conn.get("name"),
    )
    destination_objects.refresh_after_change(
        ctx.session, runtime=ctx.runtime, destination=destination
    )
    objects = destination_objects.cached(ctx.session, destination_id=destination.id)
    ctx.commit()
    return ok(render.destination(destination, objects), "created", 201)


@router.get("/destinations", response_model=ListEnvelope[DestinationRead])
def list_destinations(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """Each destination embeds its cached objects (refresh_objects fills the cache)."""
    page = destinations.list_(ctx.session, workspace_id=ctx.workspace_id, params=params)
    ids = [d.id for d in page.items]
    cache = destination_objects.cached_for(ctx.session, destination_ids=ids)
    items = [render.destination(d, cache.get(d.id)) for d in page.items]
    return listing(request, page, managed.annotated(
        ctx.session, workspace_id=ctx.workspace_id, kind="destination", items=items))


@router.get("/destinations/{destination_id}", response_model=Envelope[DestinationRead])
def get_destination(
    destination_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    destination = destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )
    objects = destination_objects.cached(ctx.session, destination_id=destination.id)
    item = render.destination(destination, objects)
    return ok(managed.annotated(
        ctx.session, workspace_id=ctx.workspace_id, kind="destination", items=[item])[0])


@router.patch("/destinations/{destination_id}", response_model=Envelope[DestinationRead])
def update_destination(
    destination_id: Int64,
    body: dict[str, Any] = Depends(body_of(DestinationUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    destination = destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )
    destination = destinations.update(
        ctx.session, destination=destination, vault=ctx.vault, changes=_service_connection(body)
    )
    if "credentials" in body["service_connection"]:
        destination_objects.refresh_after_change(
            ctx.session, runtime=ctx.runtime, destination=destination
        )
    objects = destination_objects.cached(ctx.session, destination_id=destination.id)
    ctx.commit()
    return ok(render.destination(destination, objects), "updated")


@router.delete("/destinations/{destination_id}", response_model=Deleted)
def delete_destination(
    destination_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    destination = destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )
    destinations.delete(ctx.session, destination=destination)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


@router.get(
    "/destinations/{destination_id}/objects",
    response_model=ListEnvelope[DestinationObjectRead],
)
def list_destination_objects(
    destination_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    destination = destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )
    objects = destinations.list_objects(destination, vault=ctx.vault)
    cls = destinations.connector_class(destination, vault=ctx.vault)
    options = getattr(cls, "sync_options_model", None)
    start = (params.page - 1) * params.per_page
    page = Page(objects[start : start + params.per_page], len(objects), params)
    preserve = cls.capabilities.field_preferences
    return listing(request, page, [render.destination_object(o, options, preserve_values=preserve)
                                   for o in page.items])


@router.get(
    "/destinations/{destination_id}/objects/{full_name:path}",
    response_model=Envelope[DestinationObjectRead],
)
def get_destination_object(
    destination_id: Int64, full_name: str, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    destination = destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )
    obj = destinations.get_object(destination, vault=ctx.vault, full_name=full_name)
    cls = destinations.connector_class(destination, vault=ctx.vault)
    options = getattr(cls, "sync_options_model", None)
    return ok(render.destination_object(
        obj, options, preserve_values=cls.capabilities.field_preferences))
