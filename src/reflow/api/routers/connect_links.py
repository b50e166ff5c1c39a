"""Source and destination connect links (Census Embedded, §12 and §16): create, list,
fetch, revoke, and re-authorize links for existing connections. The page a link's
``uri`` opens is served by ``connect_pages``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from reflow.api.deps import WorkspaceContext, json_object, workspace_context
from reflow.api.envelope import iso, listing, ok, page_params
from reflow.db.repo import PageParams
from reflow.db.tables_links import ConnectLink
from reflow.runtime import Runtime
from reflow.services import connect_links, destinations, sources

router = APIRouter(tags=["connect links"])


def base_url(request: Request, runtime: Runtime) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def render_link(link: ConnectLink, *, base: str, runtime: Runtime) -> dict[str, Any]:
    token = connect_links.token_of(link, runtime.vault)
    return {
        "id": link.id,
        "type": link.type,
        "expiration": iso(link.expiration),
        "expired": connect_links.expired(link),
        "revoked": link.revoked,
        "uri": f"{base}{connect_links.PAGE_PATH}?auth={token}",
        "redirect_uri": link.redirect_uri,
        f"{link.kind}_id": link.connection_id,
        "created_at": iso(link.created_at),
    }


def _create(
    request: Request,
    ctx: WorkspaceContext,
    kind: connect_links.Kind,
    body: dict[str, Any],
    connection: Any = None,
) -> JSONResponse:
    link = connect_links.create(
        ctx.session,
        workspace_id=ctx.workspace_id,
        vault=ctx.vault,
        kind=kind,
        body=body,
        # Census's default lifetime is 24 h, like sync/segment management links.
        ttl_seconds=ctx.runtime.settings.management_link_ttl_seconds,
        connection=connection,
    )
    ctx.commit()
    data = render_link(link, base=base_url(request, ctx.runtime), runtime=ctx.runtime)
    return ok(data, "created", 201)


def _list(
    request: Request, ctx: WorkspaceContext, kind: connect_links.Kind, params: PageParams
) -> JSONResponse:
    page = connect_links.list_(ctx.session, workspace_id=ctx.workspace_id, kind=kind, params=params)
    base = base_url(request, ctx.runtime)
    return listing(
        request, page, [render_link(x, base=base, runtime=ctx.runtime) for x in page.items]
    )


def _get(
    request: Request, ctx: WorkspaceContext, kind: connect_links.Kind, link_id: int
) -> JSONResponse:
    link = connect_links.get(ctx.session, workspace_id=ctx.workspace_id, kind=kind, link_id=link_id)
    return ok(render_link(link, base=base_url(request, ctx.runtime), runtime=ctx.runtime))


def _revoke(
    request: Request, ctx: WorkspaceContext, kind: connect_links.Kind, link_id: int
) -> JSONResponse:
    link = connect_links.get(ctx.session, workspace_id=ctx.workspace_id, kind=kind, link_id=link_id)
    connect_links.revoke(ctx.session, link=link)
    ctx.commit()
    return ok(render_link(link, base=base_url(request, ctx.runtime), runtime=ctx.runtime))


@router.get("/source_connect_links")
def list_source_links(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    return _list(request, ctx, "source", params)


@router.post("/source_connect_links", status_code=201)
def create_source_link(
    request: Request,
    body: dict[str, Any] = Depends(json_object),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    return _create(request, ctx, "source", body)


@router.get("/source_connect_links/{link_id}")
def get_source_link(
    link_id: int, request: Request, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return _get(request, ctx, "source", link_id)


@router.post("/source_connect_links/{link_id}/revoke")
def revoke_source_link(
    link_id: int, request: Request, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return _revoke(request, ctx, "source", link_id)


@router.post("/sources/{source_id}/connect_links", status_code=201)
def reauthorize_source_link(
    source_id: int,
    request: Request,
    body: dict[str, Any] = Depends(json_object),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    return _create(request, ctx, "source", body, source)


@router.get("/destination_connect_links")
def list_destination_links(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    return _list(request, ctx, "destination", params)


@router.post("/destination_connect_links", status_code=201)
def create_destination_link(
    request: Request,
    body: dict[str, Any] = Depends(json_object),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    return _create(request, ctx, "destination", body)


@router.get("/destination_connect_links/{link_id}")
def get_destination_link(
    link_id: int, request: Request, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return _get(request, ctx, "destination", link_id)


@router.post("/destination_connect_links/{link_id}/revoke")
def revoke_destination_link(
    link_id: int, request: Request, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return _revoke(request, ctx, "destination", link_id)


@router.post("/destinations/{destination_id}/connect_links", status_code=201)
def reauthorize_destination_link(
    destination_id: int,
    request: Request,
    body: dict[str, Any] = Depends(json_object),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    destination = destinations.get(
        ctx.session, workspace_id=ctx.workspace_id, destination_id=destination_id
    )
    return _create(request, ctx, "destination", body, destination)
