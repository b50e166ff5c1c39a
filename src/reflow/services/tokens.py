"""API tokens managed from the command line (``reflow token``): list, create, revoke,
working on the state store directly, for when every token is lost. A token is printed
once, at creation; only its hash is stored."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.db.tables import ApiToken, Organization, Workspace
from reflow.db.tables_org import User
from reflow.errors import BadRequest, NotFound
from reflow.services.auth import issue_token


@dataclass(frozen=True)
class TokenInfo:
    id: int
    kind: str
    organization_id: int
    workspace_id: int | None
    user_email: str | None
    created_at: dt.datetime


def list_tokens(session: Session) -> list[TokenInfo]:
    rows = session.execute(
        select(ApiToken, User.email).outerjoin(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.id)
    ).all()
    return [TokenInfo(t.id, t.kind, t.organization_id, t.workspace_id, email, t.created_at)
            for t, email in rows]


def create_workspace_token(session: Session, *, workspace_id: int) -> tuple[int, str]:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound(f"workspace {workspace_id} not found")
    token = issue_token(session, kind="workspace", organization_id=workspace.organization_id,
                        workspace_id=workspace.id)
    return _id_of(session, token), token


def create_organization_token(
    session: Session, *, organization_id: int, email: str | None = None
) -> tuple[int, str]:
    """A personal access token of ``email`` (default: an admin of the organization)."""
    if session.get(Organization, organization_id) is None:
        raise NotFound(f"organization {organization_id} not found")
    user = _user(session, organization_id=organization_id, email=email)
    token = issue_token(session, kind="organization", organization_id=organization_id)
    token_id = _id_of(session, token)
    row = session.get(ApiToken, token_id)
    assert row is not None
    row.user_id = user.id
    session.flush()
    return token_id, token


def revoke(session: Session, *, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token {token_id} not found")
    session.delete(token)
    session.flush()
    return token


def _user(session: Session, *, organization_id: int, email: str | None) -> User:
    from reflow.services.organization import adopt_initial_owner

    if email is None:
        admin = session.scalar(select(User).where(
            User.organization_id == organization_id, User.role == "admin").order_by(User.id))
        return admin or adopt_initial_owner(session, organization_id=organization_id)
    user = session.scalar(select(User).where(
        User.organization_id == organization_id, User.email == email))
    if user is None:
        raise BadRequest(f"--user: organization {organization_id} has no user {email!r}")
    return user


def _id_of(session: Session, token: str) -> int:
    from reflow.crypto import hash_token

    token_id = session.scalar(select(ApiToken.id).where(ApiToken.token_hash == hash_token(token)))
    assert token_id is not None
    return token_id
