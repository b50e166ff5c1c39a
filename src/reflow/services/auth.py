"""Resolving a bearer token to what it may see."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.crypto import hash_token
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
