"""A workspace's API keys: list, issue, revoke. (The Census API has one retrievable key
per workspace, ``GET /workspaces/{id}/api_key``; the console also lets an owner issue
more and revoke any, e.g. one per integration.)"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from reflow.db.tables import ApiToken, Workspace
from reflow.db.tables_org import WorkspaceKeyCopy
from reflow.errors import NotFound
from reflow.services.auth import issue_token


def list_(session: Session, *, workspace_id: int) -> list[ApiToken]:
    return list(session.scalars(
        select(ApiToken)
        .where(ApiToken.workspace_id == workspace_id, ApiToken.kind == "workspace")
        .order_by(ApiToken.id)
    ))


def issue(session: Session, *, workspace: Workspace) -> str:
    """A new key, shown this once; only its hash is stored."""
    return issue_token(session, kind="workspace", organization_id=workspace.organization_id,
                       workspace_id=workspace.id)


def revoke(session: Session, *, workspace_id: int, token_id: int) -> None:
    """The key stops working at once, on the API and in console sessions made with it."""
    row = session.get(ApiToken, token_id)
    if row is None or row.workspace_id != workspace_id or row.kind != "workspace":
        raise NotFound(f"API key {token_id} not found")
    session.execute(delete(WorkspaceKeyCopy).where(WorkspaceKeyCopy.token_id == token_id))
    session.delete(row)
    session.flush()
