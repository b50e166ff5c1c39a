"""Organization API (personal access tokens): users and invitations.

Any user of the organization may read; writes need an organization admin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from reflow.api import render_org
from reflow.api.deps import OrganizationContext, body_of, organization_context
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import InvitationCreate, InvitationUpdate, UserUpdate
from reflow.api.schemas.responses import Deleted, Envelope, InvitationRead, ListEnvelope, UserRead
from reflow.db.repo import PageParams
from reflow.db.tables_org import WorkspaceInvitation
from reflow.services import invitations, organization
from reflow.services.listing import grouped

router = APIRouter(tags=["organization"])


# -- users ----------------------------------------------------------------------------


@router.get("/users", response_model=ListEnvelope[UserRead])
def list_users(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    page = organization.list_users(ctx.session, organization_id=ctx.organization_id, params=params)
    return listing(request, page, [render_org.user(u) for u in page.items])


@router.get("/users/{user_id}", response_model=Envelope[UserRead])
def get_user(
    user_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    user = organization.get_user(ctx.session, organization_id=ctx.organization_id, user_id=user_id)
    return ok(render_org.user(user))


@router.patch("/users/{user_id}", response_model=Envelope[UserRead])
def update_user(
    user_id: Int64,
    body: dict[str, Any] = Depends(body_of(UserUpdate)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    organization.require_admin(ctx.user)
    user = organization.get_user(ctx.session, organization_id=ctx.organization_id, user_id=user_id)
    user = organization.update_user(ctx.session, user=user, body=body)
    ctx.commit()
    return ok(render_org.user(user), "updated")


@router.delete("/users/{user_id}", response_model=Deleted)
def delete_user(
    user_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    organization.require_admin(ctx.user)
    user = organization.get_user(ctx.session, organization_id=ctx.organization_id, user_id=user_id)
    organization.delete_user(ctx.session, user=user)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


# -- invitations ----------------------------------------------------------------------


@router.get("/invitations", response_model=ListEnvelope[InvitationRead])
def list_invitations(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    page = invitations.list_(ctx.session, organization_id=ctx.organization_id, params=params)
    grants = grouped(ctx.session, WorkspaceInvitation.invitation_id,
                     [i.id for i in page.items], WorkspaceInvitation.id)
    return listing(request, page, [render_org.invitation(ctx.session, i, grants[i.id])
                                   for i in page.items])


@router.post("/invitations", response_model=Envelope[InvitationRead])
def create_invitation(
    body: dict[str, Any] = Depends(body_of(InvitationCreate)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    """200 ``success``, as documented (not 201 ``created``)."""
    organization.require_admin(ctx.user)
    invitation = invitations.create(
        ctx.session, organization_id=ctx.organization_id, creator=ctx.user, body=body
    )
    ctx.commit()
    return ok(render_org.invitation(ctx.session, invitation))


@router.get("/invitations/{invitation_id}", response_model=Envelope[InvitationRead])
def get_invitation(
    invitation_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    invitation = invitations.get(
        ctx.session, organization_id=ctx.organization_id, invitation_id=invitation_id
    )
    return ok(render_org.invitation(ctx.session, invitation))


@router.patch("/invitations/{invitation_id}", response_model=Envelope[InvitationRead])
def update_invitation(
    invitation_id: Int64,
    body: dict[str, Any] = Depends(body_of(InvitationUpdate)),
    ctx: OrganizationContext = Depends(organization_context),
) -> JSONResponse:
    organization.require_admin(ctx.user)
    invitation = invitations.get(
        ctx.session, organization_id=ctx.organization_id, invitation_id=invitation_id
    )
    invitation = invitations.update(ctx.session, invitation=invitation, body=body)
    ctx.commit()
    return ok(render_org.invitation(ctx.session, invitation), "updated")


def _revoke(invitation_id: Int64, ctx: OrganizationContext) -> dict[str, Any]:
    organization.require_admin(ctx.user)
    invitation = invitations.get(
        ctx.session, organization_id=ctx.organization_id, invitation_id=invitation_id
    )
    data = render_org.invitation(ctx.session, invitation)
    invitations.revoke(ctx.session, invitation=invitation)
    ctx.commit()
    return data


@router.post("/invitations/{invitation_id}/revoke", response_model=Envelope[InvitationRead])
def revoke_invitation(
    invitation_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    return ok(_revoke(invitation_id, ctx))


@router.delete("/invitations/{invitation_id}", response_model=Deleted)
def delete_invitation(
    invitation_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    _revoke(invitation_id, ctx)
    return JSONResponse({"status": "deleted"})


@router.post("/invitations/{invitation_id}/accept", response_model=Envelope[UserRead])
def accept_invitation(
    invitation_id: Int64, ctx: OrganizationContext = Depends(organization_context)
) -> JSONResponse:
    """Reflow extension: creates the invitee's user; the body carries their first
    personal access token, shown this once."""
    organization.require_admin(ctx.user)
    invitation = invitations.get(
        ctx.session, organization_id=ctx.organization_id, invitation_id=invitation_id
    )
    user, token = invitations.accept(ctx.session, invitation=invitation)
    ctx.commit()
    return ok({**render_org.user(user), "personal_access_token": token})
