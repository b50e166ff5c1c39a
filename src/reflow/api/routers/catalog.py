"""Source types and destination types (``/connectors``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from reflow.api import render
from reflow.api.deps import WorkspaceContext, workspace_context
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.responses import DestinationTypeRead, Envelope, ListEnvelope, SourceTypeRead
from reflow.connectors import registry
from reflow.db.repo import Page, PageParams
from reflow.errors import NotFound
from reflow.services import destination_types

router = APIRouter(tags=["catalog"])


def _page(items: list, params: PageParams) -> Page:
    """Types have no creation time: they are listed by service name whatever ``order``."""
    start = (params.page - 1) * params.per_page
    return Page(items[start : start + params.per_page], len(items), params)


@router.get("/source_types", response_model=ListEnvelope[SourceTypeRead])
def list_source_types(
    request: Request,
    params: PageParams = Depends(page_params),
    _: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    page = _page(list(registry.source_types().values()), params)
    return listing(request, page, [render.source_type(c) for c in page.items])


@router.get("/source_types/{service_name}", response_model=Envelope[SourceTypeRead])
def get_source_type(
    service_name: str, _: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    cls = registry.source_types().get(service_name)
    if cls is None:
        raise NotFound(f"source type {service_name!r} not found")
    return ok(render.source_type(cls))


@router.get("/connectors", response_model=ListEnvelope[DestinationTypeRead])
def list_connectors(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    catalogue = destination_types.catalogue(
        ctx.session, workspace_id=ctx.workspace_id, vault=ctx.vault
    )
    page = _page(list(catalogue.values()), params)
    return listing(request, page, [render.destination_type(c) for c in page.items])


@router.get("/connectors/{service_name}", response_model=Envelope[DestinationTypeRead])
def get_connector(
    service_name: str, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    cls = destination_types.catalogue(
        ctx.session, workspace_id=ctx.workspace_id, vault=ctx.vault
    ).get(service_name)
    if cls is None:
        raise NotFound(f"destination type {service_name!r} not found")
    return ok(render.destination_type(cls))
