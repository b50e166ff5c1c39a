"""Sync and segment management links, and the token-authorised endpoints a link's
``uri`` opens (Reflow's stand-in for Census's embedded wizard):

* ``GET  /embedded/sync_wizard?auth=<token>``: what the link allows (create or edit).
* ``POST /embedded/sync_wizard?auth=<token>``: a create link takes a ``POST /syncs``
  body and creates the sync (once); an edit link takes a ``PATCH /syncs/{id}`` body
  and edits its sync (until it expires or is revoked).
* ``GET  /embedded/segment_wizard?auth=<token>``: what a segment link allows
  (segments are not implemented yet, so nothing can be applied with it).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from reflow.api.deps import (
    WorkspaceContext,
    body_of,
    get_runtime,
    get_session,
    workspace_context,
)
from reflow.api.envelope import iso, ok
from reflow.api.link_routes import LinkKind, add_link_routes, common_fields
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import LinkCreate, SyncCreate
from reflow.api.schemas.responses import Capability, Envelope, LinkRead, SyncValidated
from reflow.db.tables_hooks import ManagementLink
from reflow.errors import Gone, NotFound
from reflow.runtime import Runtime
from reflow.services import links, sources, syncs

router = APIRouter(tags=["management links"])


def render_link(link: ManagementLink, *, base: str, runtime: Runtime) -> dict[str, Any]:
    uri = f"{base}{links.WIZARD_PATHS[link.kind]}"
    data = common_fields(link, type_=links.TYPES[link.kind], uri=uri, vault=runtime.vault)
    data["created_at"] = iso(link.created_at)
    if link.kind == "sync":
        data["sync_id"] = link.sync_id
    else:
        data["segment_id"] = link.segment_id
        data["source_id"] = link.source_id
    return data


SYNC = LinkKind(links, "sync", render_link)
SEGMENT = LinkKind(links, "segment", render_link)
add_link_routes(router, SYNC, collection="sync_management_links", name="sync")
add_link_routes(router, SEGMENT, collection="segment_management_links", name="segment")


@router.post(
    "/syncs/{sync_id}/connect_links", status_code=201, response_model=Envelope[LinkRead]
)
def create_edit_sync_link(
    sync_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(LinkCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    sync = syncs.get(ctx.session, workspace_id=ctx.workspace_id, sync_id=sync_id)
    return SYNC.create(request, ctx, body, sync_id=sync.id)


@router.post(
    "/sources/{source_id}/filter_segments/{segment_id}/segment_management_links",
    status_code=201,
    response_model=Envelope[LinkRead],
)
def create_edit_segment_link(
    source_id: Int64,
    segment_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(LinkCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """An edit link for an existing segment of the source (404 otherwise)."""
    from reflow.services import segments

    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    segments.get(ctx.session, source=source, segment_id=segment_id)
    return SEGMENT.create(request, ctx, body, source_id=source.id, segment_id=segment_id)


# --- consuming a link (no API token: the link's token is the credential) ---------------


def _capability(link: ManagementLink) -> dict[str, Any]:
    data = links.capability(link)
    data["expiration"] = iso(data["expiration"])
    return data


@router.get("/embedded/sync_wizard", response_model=Envelope[Capability])
def open_sync_link(
    auth: str | None = Query(None), session: Session = Depends(get_session)
) -> JSONResponse:
    return ok(_capability(links.resolve(session, token=auth, kind="sync")))


@router.post("/embedded/sync_wizard", response_model=SyncValidated)
def apply_sync_link(
    auth: str | None = Query(None),
    body: dict[str, Any] = Depends(body_of(SyncCreate)),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> JSONResponse:
    link = links.resolve(session, token=auth, kind="sync")
    if link.purpose == "edit":
        try:
            sync = syncs.get(session, workspace_id=link.workspace_id, sync_id=link.sync_id or 0)
        except NotFound:
            raise Gone(f"sync {link.sync_id} that this link edits no longer exists") from None
        syncs.update(session, sync=sync, vault=runtime.vault, body=body)
        session.commit()
        return ok({"sync_id": sync.id}, "updated")
    created = syncs.create(session, workspace_id=link.workspace_id, vault=runtime.vault, body=body)
    if created is None:  # validate_only
        return JSONResponse({"status": "success", "message": "the sync configuration is valid"})
    links.mark_used(session, link=link, sync_id=created.id)
    session.commit()
    return ok({"sync_id": created.id}, "created")


@router.get("/embedded/segment_wizard", response_model=Envelope[Capability])
def open_segment_link(
    auth: str | None = Query(None), session: Session = Depends(get_session)
) -> JSONResponse:
    return ok(_capability(links.resolve(session, token=auth, kind="segment")))
