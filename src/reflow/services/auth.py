"""Issuing API tokens, and resolving a bearer token to what it may see."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.crypto import hash_token, new_token
from reflow.db.tables import ApiToken
from reflow.errors import Unauthorized


@dataclass(frozen=True)
class Principal:
    kind: str  # "workspace" | "organization"
    organization_id: int
    workspace_id: int | None
    #: The user a personal access token belongs to (None: workspace key, or the
    #: organization token ``reflow init`` printed before its owner was materialized).
    user_id: int | None = None


MISSING_TOKEN = "missing API token: send Authorization: Bearer <token>"


def authenticate(session: Session, *, token: str | None) -> Principal:
    if not token:
        raise Unauthorized(MISSING_TOKEN)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        raise Unauthorized("invalid API token")
    return Principal(row.kind, row.organization_id, row.workspace_id, row.user_id)


def issue_token(
    session: Session, *, kind: str, organization_id: int, workspace_id: int | None = None
) -> str:
    """A new token; only its hash is stored, so this is the one time it is seen."""
    token = new_token()
    session.add(
        ApiToken(
            kind=kind,
            organization_id=organization_id,
            workspace_id=workspace_id,
            token_hash=hash_token(token),
        )
    )
    session.flush()
    return token
