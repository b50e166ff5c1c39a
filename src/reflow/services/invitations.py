"""Invitations into an organization and its workspaces, and accepting one.

Reflow sends no email: an admin accepts an invitation on the invitee's behalf
(``POST /invitations/{id}/accept``), which creates the user and returns their first
personal access token, to be handed over like any other secret.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.db.repo import Page, PageParams, paginate
from reflow.db.tables import Workspace
from reflow.db.tables_org import Invitation, User, WorkspaceInvitation
from reflow.errors import BadRequest, Conflict, NotFound
from reflow.services import organization, workspace_admin


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- organization invitations ---------------------------------------------------------


def _parse_workspaces(
    session: Session, *, organization_id: int, value: Any
) -> list[tuple[int, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("workspaces must be an array of {id, role}")
    grants: list[tuple[int, str]] = []
    for i, item in enumerate(value):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("id"), int)
            or isinstance(item.get("id"), bool)
        ):
            raise BadRequest(f"workspaces[{i}].id must be a workspace id")
        try:
            organization.workspace_in_org(
                session, organization_id=organization_id, workspace_id=item["id"]
            )
        except NotFound:
            raise BadRequest(f"workspaces[{i}].id: workspace {item['id']} not found") from None
        # Census's default when the organization has no access controls.
        role = organization.parse_workspace_role(item.get("role", "owner"), f"workspaces[{i}].role")
        grants.append((item["id"], role))
    return grants


def _pending(session: Session, *, organization_id: int, email: str) -> Invitation | None:
    return session.scalar(
        select(Invitation).where(
            Invitation.organization_id == organization_id,
            Invitation.email == email,
            Invitation.claimed_at.is_(None),
        )
    )


def _user(session: Session, *, organization_id: int, email: str) -> User | None:
    return session.scalar(
        select(User).where(User.organization_id == organization_id, User.email == email)
    )


def create(
    session: Session, *, organization_id: int, creator: User, body: dict[str, Any]
) -> Invitation:
    """An existing member is added to the listed workspaces at once and the
    invitation is born claimed, as Census documents."""
    if "email" not in body:
        raise BadRequest("email is required")
    email = organization.parse_email(body["email"])
    role = organization.parse_org_role(body.get("role", "member"))
    grants = _parse_workspaces(
        session, organization_id=organization_id, value=body.get("workspaces")
    )
    if _pending(session, organization_id=organization_id, email=email) is not None:
        raise Conflict(f"email: an invitation for {email} is already pending")
    invitation = Invitation(
        organization_id=organization_id, email=email, role=role, created_by_id=creator.id
    )
    session.add(invitation)
    session.flush()
    for workspace_id, ws_role in grants:
        session.add(
            WorkspaceInvitation(
                invitation_id=invitation.id, workspace_id=workspace_id, role=ws_role
            )
        )
    session.flush()
    existing = _user(session, organization_id=organization_id, email=email)
    if existing is not None:
        _claim(session, invitation=invitation, user=existing)
    return invitation


def list_(session: Session, *, organization_id: int, params: PageParams) -> Page:
    stmt = select(Invitation).where(Invitation.organization_id == organization_id)
    return paginate(session, stmt, params, Invitation.id)


def get(session: Session, *, organization_id: int, invitation_id: int) -> Invitation:
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.organization_id != organization_id:
        raise NotFound(f"invitation {invitation_id} not found")
    return invitation


def workspace_grants(session: Session, *, invitation: Invitation) -> list[WorkspaceInvitation]:
    return list(
        session.scalars(
            select(WorkspaceInvitation)
            .where(WorkspaceInvitation.invitation_id == invitation.id)
            .order_by(WorkspaceInvitation.id)
        )
    )


def _unclaimed(invitation: Invitation) -> None:
    if invitation.claimed_at is not None:
        raise Conflict(f"invitation {invitation.id} was already claimed")


def update(session: Session, *, invitation: Invitation, body: dict[str, Any]) -> Invitation:
    _unclaimed(invitation)
    if "role" in body:
        invitation.role = organization.parse_org_role(body["role"])
    session.flush()
    return invitation


def revoke(session: Session, *, invitation: Invitation) -> None:
    _unclaimed(invitation)
    for grant in workspace_grants(session, invitation=invitation):
        session.delete(grant)
    session.delete(invitation)
    session.flush()


def accept(
    session: Session, *, invitation: Invitation, password: str | None = None
) -> tuple[User, str]:
    """Create the invitee's user with the invited roles and their first token; with a
    ``password``, also their console password (the console's accept form sets one)."""
    _unclaimed(invitation)
    user, token = organization.create_user(
        session,
        organization_id=invitation.organization_id,
        email=invitation.email,
        role=invitation.role,
    )
    if password is not None:
        organization.set_password(session, user=user, password=password)
    _claim(session, invitation=invitation, user=user)
    return user, token


def _claim(session: Session, *, invitation: Invitation, user: User) -> None:
    for grant in workspace_grants(session, invitation=invitation):
        workspace_admin.set_member_role(
            session, workspace_id=grant.workspace_id, user=user, role=grant.role
        )
    invitation.claimed_at = _now()
    invitation.claimed_by_id = user.id
    session.flush()


# -- workspace invitations ------------------------------------------------------------


def invite_to_workspace(
    session: Session, *, workspace: Workspace, creator: User, body: dict[str, Any]
) -> list[WorkspaceInvitation]:
    """``{"emails": [...], "role": ...}``: one workspace invitation per email, riding
    on the email's pending organization invitation (or a new ``member`` one)."""
    emails = body.get("emails")
    if not isinstance(emails, list) or not emails:
        raise BadRequest("emails must be a non-empty array of email addresses")
    parsed = [organization.parse_email(e, f"emails[{i}]") for i, e in enumerate(emails)]
    if "role" not in body:
        raise BadRequest("role is required")
    role = organization.parse_workspace_role(body["role"])
    return [
        _invite_one(session, workspace=workspace, creator=creator, email=email, role=role)
        for email in dict.fromkeys(parsed)
    ]


def _invite_one(
    session: Session, *, workspace: Workspace, creator: User, email: str, role: str
) -> WorkspaceInvitation:
    org_id = workspace.organization_id
    invitation = _pending(session, organization_id=org_id, email=email)
    if invitation is None:
        invitation = Invitation(
            organization_id=org_id, email=email, role="member", created_by_id=creator.id
        )
        session.add(invitation)
        session.flush()
    grant = session.scalar(
        select(WorkspaceInvitation).where(
            WorkspaceInvitation.invitation_id == invitation.id,
            WorkspaceInvitation.workspace_id == workspace.id,
        )
    )
    if grant is None:
        grant = WorkspaceInvitation(
            invitation_id=invitation.id, workspace_id=workspace.id, role=role
        )
        session.add(grant)
    grant.role = role
    session.flush()
    existing = _user(session, organization_id=org_id, email=email)
    if existing is not None:
        _claim(session, invitation=invitation, user=existing)
    return grant


def list_for_workspace(session: Session, *, workspace_id: int, params: PageParams) -> Page:
    stmt = select(WorkspaceInvitation).where(WorkspaceInvitation.workspace_id == workspace_id)
    return paginate(session, stmt, params, WorkspaceInvitation.id)


def get_for_workspace(
    session: Session, *, workspace_id: int, invitation_id: int
) -> WorkspaceInvitation:
    grant = session.get(WorkspaceInvitation, invitation_id)
    if grant is None or grant.workspace_id != workspace_id:
        raise NotFound(f"invitation {invitation_id} not found in workspace {workspace_id}")
    return grant


def update_for_workspace(
    session: Session, *, grant: WorkspaceInvitation, body: dict[str, Any]
) -> WorkspaceInvitation:
    invitation = session.get(Invitation, grant.invitation_id)
    assert invitation is not None
    _unclaimed(invitation)
    if "role" in body:
        grant.role = organization.parse_workspace_role(body["role"])
    session.flush()
    return grant


def delete_for_workspace(session: Session, *, grant: WorkspaceInvitation) -> None:
    """Withdraws the workspace grant; the organization invitation stays."""
    invitation = session.get(Invitation, grant.invitation_id)
    assert invitation is not None
    _unclaimed(invitation)
    session.delete(grant)
    session.flush()
