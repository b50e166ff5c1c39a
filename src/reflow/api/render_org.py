"""Organization-area rows -> Census wire objects."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from reflow.api.envelope import iso
from reflow.db.tables import Workspace
from reflow.db.tables_org import Invitation, User, WorkspaceInvitation, WorkspaceMember
from reflow.services import invitations, workspace_admin


def user(row: User) -> dict[str, Any]:
    return {"id": row.id, "email": row.email, "created_at": iso(row.created_at), "role": row.role}


def invitation(
    session: Session, row: Invitation, grants: list[WorkspaceInvitation] | None = None
) -> dict[str, Any]:
    """``grants``: the invitation's workspace grants, when a page loaded them."""
    if grants is None:
        grants = invitations.workspace_grants(session, invitation=row)
    return {
        "id": row.id,
        "email": row.email,
        "created_at": iso(row.created_at),
        "created_by_id": row.created_by_id,
        "claimed_at": iso(row.claimed_at),
        "claimed_by_id": row.claimed_by_id,
        "role": row.role,
        # Census capitalizes workspace roles here ("Viewer") and nowhere else.
        "associated_workspace_invitations": [
            {"id": g.id, "workspace_id": g.workspace_id, "role": g.role.capitalize()}
            for g in grants
        ],
    }


def workspace(
    session: Session, row: Workspace, api_key: str | None = None,
    emails: list[str] | None = None,
) -> dict[str, Any]:
    """``emails``: the workspace's notification emails, when a page loaded them."""
    if emails is None:
        emails = workspace_admin.notification_emails(session, workspace_id=row.id)
    data: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "organization_id": row.organization_id,
        "created_at": iso(row.created_at),
        "notification_emails": emails,
    }
    if api_key is not None:
        data["api_key"] = api_key
    return data


def workspace_user(session: Session, row: WorkspaceMember) -> dict[str, Any]:
    member = session.get(User, row.user_id)
    assert member is not None
    # The reference shows this id as a string, unlike every other id.
    return {
        "id": str(member.id),
        "email": member.email,
        "role": row.role,
        "created_at": iso(member.created_at),
    }


def workspace_invitation(session: Session, row: WorkspaceInvitation) -> dict[str, Any]:
    parent = session.get(Invitation, row.invitation_id)
    assert parent is not None
    return {
        "id": row.id,
        "email": parent.email,
        "created_at": iso(row.created_at),
        "created_by_id": parent.created_by_id,
        "claimed_by_id": parent.claimed_by_id,
        "role": row.role,
        "workspace_id": row.workspace_id,
    }
