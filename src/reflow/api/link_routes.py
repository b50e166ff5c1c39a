"""What the routers of capability links share (sync/segment management links in
``routers/links.py``, source/destination connect links in ``routers/connect_links.py``):
the public base of a link's ``uri``, the fields every link renders, and the
list/create/fetch/revoke routes of one link kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import iso, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import LinkCreate
from reflow.api.schemas.responses import Envelope, LinkRead, ListEnvelope
from reflow.crypto import Vault
from reflow.db.repo import PageParams
from reflow.runtime import Runtime
from reflow.services import link_tokens

#: ``render(link, *, base, runtime)``: a link as the API shows it.
Render = Callable[..., dict[str, Any]]


def public_base(request: Request, runtime: Runtime) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def common_fields(link: Any, *, type_: str, uri: str, vault: Vault) -> dict[str, Any]:
    """The fields every link renders; ``uri`` is the page it opens, before its token."""
    return {
        "id": link.id,
        "type": type_,
        "expiration": iso(link.expiration),
        "expired": link_tokens.expired(link),
        "revoked": link.revoked,
        "uri": f"{uri}?auth={link_tokens.token_of(link, vault)}",
        "redirect_uri": link.redirect_uri,
    }


def _may_write(ctx: WorkspaceContext) -> bool:
    return link_tokens.may_write(ctx.session, principal=ctx.principal,
                                 workspace_id=ctx.workspace_id)


def _without_token(data: dict[str, Any]) -> dict[str, Any]:
    """A link as a reader sees it: its ``uri`` carries the token, which grants writing
    (creating or editing a sync, entering credentials), so a viewer gets none."""
    return {**data, "uri": None}


@dataclass(frozen=True)
class LinkKind:
    """One kind of link: its service module (``create``, ``get``, ``list_``,
    ``revoke``), its ``kind`` there, and how it renders."""

    service: Any
    kind: str
    render: Render
    body_model: type[BaseModel] = LinkCreate

    def show(self, request: Request, ctx: WorkspaceContext, link: Any) -> dict[str, Any]:
        data = self.render(link, base=public_base(request, ctx.runtime), runtime=ctx.runtime)
        return data if _may_write(ctx) else _without_token(data)

    def fetch(self, ctx: WorkspaceContext, link_id: Int64) -> Any:
        return self.service.get(
            ctx.session, workspace_id=ctx.workspace_id, kind=self.kind, link_id=link_id
        )

    def create(
        self, request: Request, ctx: WorkspaceContext, body: dict[str, Any], **target: Any
    ) -> JSONResponse:
        """A new link; ``target`` names what an edit/re-authorize link is for."""
        link = self.service.create(
            ctx.session,
            workspace_id=ctx.workspace_id,
            vault=ctx.vault,
            kind=self.kind,
            body=body,
            # Census's default lifetime is 24 h, for every kind of embedded link.
            ttl_seconds=ctx.runtime.settings.management_link_ttl_seconds,
            **target,
        )
        ctx.commit()
        return ok(self.show(request, ctx, link), "created", 201)

    def list_(self, request: Request, ctx: WorkspaceContext, params: PageParams) -> JSONResponse:
        page = self.service.list_(
            ctx.session, workspace_id=ctx.workspace_id, kind=self.kind, params=params
        )
        base = public_base(request, ctx.runtime)
        shown = [self.render(x, base=base, runtime=ctx.runtime) for x in page.items]
        if not _may_write(ctx):
            shown = [_without_token(x) for x in shown]
        return listing(request, page, shown)

    def revoke(self, request: Request, ctx: WorkspaceContext, link_id: Int64) -> JSONResponse:
        link = self.fetch(ctx, link_id)
        self.service.revoke(ctx.session, link=link)
        ctx.commit()
        return ok(self.show(request, ctx, link))


def add_link_routes(
    router: APIRouter,
    spec: LinkKind,
    *,
    collection: str,
    name: str,
    create_status: int | None = None,
) -> None:
    """``GET|POST /{collection}``, ``GET /{collection}/{link_id}`` and
    ``POST /{collection}/{link_id}/revoke``, named ``list_{name}_links``,
    ``create_{name}_link``, ``get_{name}_link`` and ``revoke_{name}_link``."""

    def list_links(
        request: Request,
        params: PageParams = Depends(page_params),
        ctx: WorkspaceContext = Depends(workspace_context),
    ) -> JSONResponse:
        return spec.list_(request, ctx, params)

    def create_link(
        request: Request,
        body: dict[str, Any] = Depends(body_of(spec.body_model)),
        ctx: WorkspaceContext = Depends(workspace_context),
    ) -> JSONResponse:
        return spec.create(request, ctx, body)

    def get_link(
        link_id: Int64, request: Request, ctx: WorkspaceContext = Depends(workspace_context)
    ) -> JSONResponse:
        return ok(spec.show(request, ctx, spec.fetch(ctx, link_id)))

    def revoke_link(
        link_id: Int64, request: Request, ctx: WorkspaceContext = Depends(workspace_context)
    ) -> JSONResponse:
        return spec.revoke(request, ctx, link_id)

    path, one = f"/{collection}", Envelope[LinkRead]
    router.add_api_route(
        path, list_links, methods=["GET"], name=f"list_{name}_links",
        response_model=ListEnvelope[LinkRead],
    )
    router.add_api_route(
        path,
        create_link,
        methods=["POST"],
        name=f"create_{name}_link",
        status_code=create_status or 201,  # LinkKind.create answers 201
        response_model=one,
    )
    router.add_api_route(
        path + "/{link_id}", get_link, methods=["GET"], name=f"get_{name}_link", response_model=one
    )
    router.add_api_route(
        path + "/{link_id}/revoke", revoke_link, methods=["POST"], name=f"revoke_{name}_link",
        response_model=one,
    )
