"""ORM tables of the organization area: users, their workspace roles, invitations,
and what a workspace has beside its row (notification emails, retrievable API key)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from reflow.db.tables import Base, Timestamped, utcnow

ORG_ROLES = ("admin", "member")
#: Least to most privileged; the index is the rank.
WORKSPACE_ROLES = ("viewer", "operator", "editor", "owner")


class User(Timestamped, Base):
    """A person of an organization. ``role`` is the organization role (admin | member);
    what the user may do inside a workspace is a ``WorkspaceMember`` role."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("organization_id", "email", name="uq_users_org_email"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    #: The console password's scrypt hash (services/passwords.py); None: token sign-in only.
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)


class WorkspaceMember(Timestamped, Base):
    __tablename__ = "workspace_members"
    __table_args__ = (
        UniqueConstraint("workspace_id", "user_id", name="uq_workspace_members_user"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))


class Invitation(Timestamped, Base):
    """An invitation into the organization. ``created_by_id``/``claimed_by_id`` are kept
    as plain ids (no foreign key): they are history and outlive a removed user."""

    __tablename__ = "invitations"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    created_by_id: Mapped[int | None] = mapped_column(default=None)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    claimed_by_id: Mapped[int | None] = mapped_column(default=None)


class WorkspaceInvitation(Timestamped, Base):
    """The workspaces (and roles) an invitation grants once claimed."""

    __tablename__ = "workspace_invitations"
    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int] = mapped_column(
        ForeignKey("invitations.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))


class WorkspaceProfile(Base):
    """Workspace attributes beyond the core row."""

    __tablename__ = "workspace_profiles"
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    notification_emails: Mapped[list[str]] = mapped_column(JSON, default=list)


class WorkspaceKeyCopy(Base):
    """A workspace API key encrypted with the vault, so ``GET /workspaces/{id}/api_key``
    can return the key that works (the token itself is matched by its hash only)."""

    __tablename__ = "workspace_key_copies"
    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    key_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


__all__ = [
    "ORG_ROLES",
    "WORKSPACE_ROLES",
    "Invitation",
    "User",
    "WorkspaceInvitation",
    "WorkspaceKeyCopy",
    "WorkspaceMember",
    "WorkspaceProfile",
]
