"""Organization API (personal access tokens): workspaces, their API key, users and
invitations; plus ``GET /workspace`` for a workspace API key.

Reads are open to every user of the organization; creating, renaming and deleting
workspaces needs an organization admin; a workspace's key, users and invitations
need an organization admin or an owner of that workspace.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from reflow.api import render_org
from reflow.api.deps import (
    OrganizationContext,
    WorkspaceContext,
    body_of,
    organization_context,
    workspace_context,
)
from reflow.api.envelope import bare, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import (
    WorkspaceCreate,
    WorkspaceInvitationCreate,
    WorkspaceInvitationUpdate,
    WorkspaceUpdate,
    WorkspaceUserSet,
)
from reflow.api.schemas.responses import (
    ApiKey,
    Deleted,
    Envelope,
    ListEnvelope,
    WorkspaceInvitationRead,
    WorkspaceRead,
    WorkspaceUserRead,
)
from reflow.db.repo import PageParams
from reflow.db.tables import Workspace
from reflow.db.tables_org import Invitation, User, WorkspaceProfile
from reflow.errors import BadRequest
from reflow.services import invitations, organization, workspace_admin
from reflow.services.listing import grouped, preload

router = APIRouter(tags=["workspaces"])


def _workspace(ctx: OrganizationContext, workspace_id: Int64) -> Workspace:
    return organization.workspace_in_org(
        ctx.session, organization_id=ctx.organization_id, workspace_id=workspace_id
    )


def _owned(ctx: OrganizationContext, workspace_id: Int64) -> Workspace:
    """The workspace, if the caller may manage it (404 before 403)."""
    workspace = _workspace(ctx, workspace_id)
    organization.require_workspace_owner(ctx.session, user=ctx.user, workspace_id=workspace.id)
    return workspace


@router.get("/workspace", response_model=Envelope[WorkspaceRead])
def current_workspace(ctx: WorkspaceContext = Depends(workspace_context)) -> JSONResponse:
    workspace = ctx.session.get(Workspace, ctx.workspace_id)
    assert workspace is not None
    return ok(render_org.workspace(ctx.session, workspace))


def _emails(profiles: list[WorkspaceProfile]) -> list[str]:
    """A workspace's notification emails from its profile row, if it has one."""
    return list(profiles[0].notification_emails) if profiles else []


@router.get("/workspaces", response_model=ListEnvelope[WorkspaceRead])
def list_workspaces(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    page = workspace_admin.list_workspaces(
        ctx.session, organization_id=ctx.organization_id, params=params
    )
    profiles = grouped(ctx.session, WorkspaceProfile.workspace_id, [w.id for w in page.items])
    return listing(request, page, [
        render_org.workspace(ctx.session, w, emails=_emails(profiles[w.id])) for w in page.items])


@router.post("/workspaces", status_code=201, response_model=Envelope[WorkspaceRead])
def create_workspace(
    body: dict[str, Any] = Depends(body_of(WorkspaceCreate)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    """201 with status ``success``, as documented; ``api_key`` only when asked for."""
    organization.require_admin(ctx.user)
    workspace, key, want_key = workspace_admin.create_from_body(
        ctx.session,
        organization_id=ctx.organization_id,
        creator=ctx.user,
        body=body,
        vault=ctx.vault,
    )
    ctx.commit()
    return ok(render_org.workspace(ctx.session, workspace, key if want_key else None), code=201)


@router.get("/workspaces/{workspace_id}", response_model=Envelope[WorkspaceRead])
def get_workspace(
    workspace_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    return ok(render_org.workspace(ctx.session, _workspace(ctx, workspace_id)))


@router.patch("/workspaces/{workspace_id}", response_model=Envelope[WorkspaceRead])
def update_workspace(
    workspace_id: Int64,
    body: dict[str, Any] = Depends(body_of(WorkspaceUpdate)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    organization.require_admin(ctx.user)
    workspace = workspace_admin.update_workspace(
        ctx.session, workspace=_workspace(ctx, workspace_id), body=body
    )
    ctx.commit()
    return ok(render_org.workspace(ctx.session, workspace), "updated")


@router.delete("/workspaces/{workspace_id}", response_model=Deleted)
def delete_workspace(
    workspace_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    organization.require_admin(ctx.user)
    workspace_admin.delete_workspace(ctx.session, workspace=_workspace(ctx, workspace_id))
    ctx.commit()
    return JSONResponse({"status": "deleted"})


@router.get("/workspaces/{workspace_id}/api_key", response_model=ApiKey)
def get_api_key(
    workspace_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    """Un-enveloped ``{"api_key": ...}``, as documented."""
    key = workspace_admin.api_key(ctx.session, workspace=_owned(ctx, workspace_id), vault=ctx.vault)
    ctx.commit()
    return bare({"api_key": key})


# -- workspace users ------------------------------------------------------------------


@router.get("/workspaces/{workspace_id}/users", response_model=ListEnvelope[WorkspaceUserRead])
def list_workspace_users(
    workspace_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    workspace = _workspace(ctx, workspace_id)
    page = workspace_admin.list_members(ctx.session, workspace_id=workspace.id, params=params)
    users = preload(ctx.session, User, [m.user_id for m in page.items])
    data = [render_org.workspace_user(ctx.session, m) for m in page.items]
    del users  # held until every member was rendered
    return listing(request, page, data)


@router.put(
    "/workspaces/{workspace_id}/users/{user_id}",
    response_model=Envelope[WorkspaceUserRead],
)
def set_workspace_user(
    workspace_id: Int64,
    user_id: Int64,
    body: dict[str, Any] = Depends(body_of(WorkspaceUserSet)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    workspace = _owned(ctx, workspace_id)
    user = organization.get_user(ctx.session, organization_id=ctx.organization_id, user_id=user_id)
    if "role" not in body:
        raise BadRequest("role is required")
    role = organization.parse_workspace_role(body["role"])
    member = workspace_admin.set_member_role(
        ctx.session, workspace_id=workspace.id, user=user, role=role
    )
    ctx.commit()
    return ok(render_org.workspace_user(ctx.session, member), "updated")


@router.delete("/workspaces/{workspace_id}/users/{user_id}", response_model=Deleted)
def remove_workspace_user(
    workspace_id: Int64, user_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    workspace = _owned(ctx, workspace_id)
    workspace_admin.remove_member(ctx.session, workspace_id=workspace.id, user_id=user_id)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


# -- workspace invitations ------------------------------------------------------------


@router.post(
    "/workspaces/{workspace_id}/invitations",
    response_model=Envelope[WorkspaceInvitationRead | list[WorkspaceInvitationRead]],
)
def invite_to_workspace(
    workspace_id: Int64,
    body: dict[str, Any] = Depends(body_of(WorkspaceInvitationCreate)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    """200 ``success``; ``data`` is the invitation object for one email (as
    documented), an array of them when several emails were given."""
    workspace = _owned(ctx, workspace_id)
    grants = invitations.invite_to_workspace(
        ctx.session, workspace=workspace, creator=ctx.user, body=body
    )
    ctx.commit()
    rendered = [render_org.workspace_invitation(ctx.session, g) for g in grants]
    return ok(rendered[0] if len(rendered) == 1 else rendered)


@router.get(
    "/workspaces/{workspace_id}/invitations",
    response_model=ListEnvelope[WorkspaceInvitationRead],
)
def list_workspace_invitations(
    workspace_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    workspace = _workspace(ctx, workspace_id)
    page = invitations.list_for_workspace(ctx.session, workspace_id=workspace.id, params=params)
    parents = preload(ctx.session, Invitation, [g.invitation_id for g in page.items])
    data = [render_org.workspace_invitation(ctx.session, g) for g in page.items]
    del parents  # held until every grant was rendered
    return listing(request, page, data)


@router.patch(
    "/workspaces/{workspace_id}/invitations/{invitation_id}",
    response_model=Envelope[WorkspaceInvitationRead],
)
def update_workspace_invitation(
    workspace_id: Int64,
    invitation_id: Int64,
    body: dict[str, Any] = Depends(body_of(WorkspaceInvitationUpdate)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    workspace = _owned(ctx, workspace_id)
    grant = invitations.get_for_workspace(
        ctx.session, workspace_id=workspace.id, invitation_id=invitation_id
    )
    grant = invitations.update_for_workspace(ctx.session, grant=grant, body=body)
    ctx.commit()
    return ok(render_org.workspace_invitation(ctx.session, grant), "updated")


@router.delete("/workspaces/{workspace_id}/invitations/{invitation_id}", response_model=Deleted)
def delete_workspace_invitation(
    workspace_id: Int64,
    invitation_id: Int64,
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    workspace = _owned(ctx, workspace_id)
    grant = invitations.get_for_workspace(
        ctx.session, workspace_id=workspace.id, invitation_id=invitation_id
    )
    invitations.delete_for_workspace(ctx.session, grant=grant)
    ctx.commit()
    return JSONResponse({"status": "deleted"})
