"""Source and destination connect links (Census Embedded, §12 and §16): create, list,
fetch, revoke, and re-authorize links for existing connections. The page a link's
``uri`` opens is served by ``connect_pages``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import iso
from reflow.api.link_routes import LinkKind, add_link_routes, common_fields
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import ConnectLinkCreate, LinkCreate
from reflow.api.schemas.responses import Envelope, LinkRead
from reflow.db.tables_links import ConnectLink
from reflow.runtime import Runtime
from reflow.services import connect_links, destinations, sources

router = APIRouter(tags=["connect links"])


def render_link(link: ConnectLink, *, base: str, runtime: Runtime) -> dict[str, Any]:
    uri = f"{base}{connect_links.PAGE_PATH}"
    data = common_fields(link, type_=link.type, uri=uri, vault=runtime.vault)
    data[f"{link.kind}_id"] = link.connection_id
    data["created_at"] = iso(link.created_at)
    return data


SOURCE = LinkKind(connect_links, "source", render_link, ConnectLinkCreate)
DESTINATION = LinkKind(connect_links, "destination", render_link, ConnectLinkCreate)
add_link_routes(router, SOURCE, collection="source_connect_links", name="source", create_status=201)


@router.post(
    "/sources/{source_id}/connect_links", status_code=201,
    response_model=Envelope[LinkRead],
)
def reauthorize_source_link(
    source_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(LinkCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    return SOURCE.create(request, ctx, body, connection=source)


add_link_routes(
    router,
    DESTINATION,
    collection="destination_connect_links",
    name="destination",
    create_status=201,
)


@router.post(
    "/destinations/{destination_id}/connect_links", status_code=201,
    response_model=Envelope[LinkRead],
)
def reauthorize_destination_link(
    destination_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(LinkCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    destination = destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )
    return DESTINATION.create(request, ctx, body, connection=destination)
