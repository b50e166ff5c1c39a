"""Workspaces as the Organization API manages them: create (with the workspace's API
key), rename, notification emails, delete with everything in it, the retrievable API
key, and workspace members."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, or_, select
from sqlalchemy.orm import Session

import reflow.db
from reflow.crypto import Vault, hash_token
from reflow.db.repo import Page, PageParams, paginate
from reflow.db.tables import ApiToken, Base, Workspace
from reflow.db.tables_org import User, WorkspaceKeyCopy, WorkspaceMember, WorkspaceProfile
from reflow.errors import BadRequest, Conflict, NotFound
from reflow.services.auth import issue_token
from reflow.services.emails import parse_email

# -- parsing --------------------------------------------------------------------------


def parse_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("name must be a non-empty string")
    if len(value.strip()) > 200:
        raise BadRequest("name must be at most 200 characters")
    return value.strip()


def parse_notification_emails(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("notification_emails must be an array of email addresses")
    return [parse_email(v, f"notification_emails[{i}]") for i, v in enumerate(value)]


def _unique_name(session: Session, *, organization_id: int, name: str, skip: int | None) -> None:
    stmt = select(Workspace.id).where(
        Workspace.organization_id == organization_id, Workspace.name == name
    )
    if skip is not None:
        stmt = stmt.where(Workspace.id != skip)
    if session.scalar(stmt) is not None:
        raise Conflict(f"name: a workspace named {name!r} already exists in this organization")


# -- workspaces -----------------------------------------------------------------------


def new_workspace(
    session: Session, *, organization_id: int, name: str = "Default workspace"
) -> tuple[Workspace, str]:
    """A bare workspace and its API token (setup, the demo); ``create_workspace`` adds
    the profile, the retrievable key and its owner."""
    workspace = Workspace(organization_id=organization_id, name=name)
    session.add(workspace)
    session.flush()
    token = issue_token(
        session, kind="workspace", organization_id=organization_id, workspace_id=workspace.id
    )
    return workspace, token


def create_workspace(
    session: Session,
    *,
    organization_id: int,
    creator: User,
    name: str,
    notification_emails: list[str],
    vault: Vault,
) -> tuple[Workspace, str]:
    """The workspace, its API key (kept retrievable), and its creator as owner."""
    _unique_name(session, organization_id=organization_id, name=name, skip=None)
    workspace, key = new_workspace(session, organization_id=organization_id, name=name)
    _keep_key(session, workspace_id=workspace.id, key=key, vault=vault)
    session.add(
        WorkspaceProfile(workspace_id=workspace.id, notification_emails=notification_emails)
    )
    session.add(WorkspaceMember(workspace_id=workspace.id, user_id=creator.id, role="owner"))
    session.flush()
    return workspace, key


def create_from_body(
    session: Session, *, organization_id: int, creator: User, body: dict[str, Any], vault: Vault
) -> tuple[Workspace, str, bool]:
    if "name" not in body:
        raise BadRequest("name is required")
    want_key = body.get("return_workspace_api_key", False)
    if not isinstance(want_key, bool):
        raise BadRequest("return_workspace_api_key must be a boolean")
    workspace, key = create_workspace(
        session,
        organization_id=organization_id,
        creator=creator,
        name=parse_name(body["name"]),
        notification_emails=parse_notification_emails(body.get("notification_emails")),
        vault=vault,
    )
    return workspace, key, want_key


def list_workspaces(session: Session, *, organization_id: int, params: PageParams) -> Page:
    stmt = select(Workspace).where(Workspace.organization_id == organization_id)
    return paginate(session, stmt, params, Workspace.id)


def notification_emails(session: Session, *, workspace_id: int) -> list[str]:
    profile = session.get(WorkspaceProfile, workspace_id)
    return list(profile.notification_emails) if profile else []


def update_workspace(session: Session, *, workspace: Workspace, body: dict[str, Any]) -> Workspace:
    name = parse_name(body["name"]) if "name" in body else None
    emails = (
        parse_notification_emails(body["notification_emails"])
        if "notification_emails" in body
        else None
    )
    if name is not None:
        _unique_name(
            session, organization_id=workspace.organization_id, name=name, skip=workspace.id
        )
        workspace.name = name
    if emails is not None:
        profile = session.get(WorkspaceProfile, workspace.id)
        if profile is None:
            session.add(WorkspaceProfile(workspace_id=workspace.id, notification_emails=emails))
        else:
            profile.notification_emails = emails
    session.flush()
    return workspace


def delete_workspace(session: Session, *, workspace: Workspace) -> None:
    """Delete the workspace and every row that belongs to it, in whichever area's table
    it lives: rows with a ``workspace_id`` and rows reaching one through foreign keys."""
    for table, condition in reversed(_owned_rows(workspace.id)):
        session.execute(delete(table).where(condition))
    session.execute(delete(Workspace).where(Workspace.id == workspace.id))
    session.flush()


def _owned_rows(workspace_id: int) -> list[tuple[Table, ColumnElement[bool]]]:
    _import_all_tables()
    workspaces: Any = Workspace.__table__
    conditions: dict[Any, ColumnElement[bool]] = {workspaces: workspaces.c.id == workspace_id}
    ordered: list[tuple[Table, ColumnElement[bool]]] = []
    for table in Base.metadata.sorted_tables:  # parents before children
        if table is workspaces:
            continue
        reasons: list[ColumnElement[bool]] = [
            fk.parent.in_(select(fk.column).where(conditions[fk.column.table]))
            for fk in table.foreign_keys
            if fk.column.table in conditions
        ]
        if "workspace_id" in table.c:
            reasons.append(table.c.workspace_id == workspace_id)
        if reasons:
            conditions[table] = or_(*reasons)
            ordered.append((table, conditions[table]))
    return ordered


def _import_all_tables() -> None:
    for module in pkgutil.iter_modules(reflow.db.__path__):
        if module.name.startswith("tables"):
            importlib.import_module(f"reflow.db.{module.name}")


# -- the workspace API key ------------------------------------------------------------


def _keep_key(session: Session, *, workspace_id: int, key: str, vault: Vault) -> None:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(key)))
    assert token is not None
    session.add(
        WorkspaceKeyCopy(
            token_id=token.id, workspace_id=workspace_id, key_encrypted=vault.encrypt({"key": key})
        )
    )
    session.flush()


def api_key(session: Session, *, workspace: Workspace, vault: Vault) -> str:
    """The workspace's retrievable API key. A workspace whose key was only ever stored
    hashed (the one ``reflow init`` made) gets a second key here, kept retrievable; the
    first keeps working."""
    copy = session.scalar(
        select(WorkspaceKeyCopy)
        .where(WorkspaceKeyCopy.workspace_id == workspace.id)
        .order_by(WorkspaceKeyCopy.token_id.desc())
        .limit(1)
    )
    if copy is not None:
        return str(vault.decrypt(copy.key_encrypted)["key"])
    key = issue_token(
        session,
        kind="workspace",
        organization_id=workspace.organization_id,
        workspace_id=workspace.id,
    )
    _keep_key(session, workspace_id=workspace.id, key=key, vault=vault)
    return key


# -- members --------------------------------------------------------------------------


def list_members(session: Session, *, workspace_id: int, params: PageParams) -> Page:
    stmt = select(WorkspaceMember).where(WorkspaceMember.workspace_id == workspace_id)
    return paginate(session, stmt, params, WorkspaceMember.id)


def member(session: Session, *, workspace_id: int, user_id: int) -> WorkspaceMember | None:
    return session.scalar(
        select(WorkspaceMember).where(
            WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == user_id
        )
    )


def set_member_role(
    session: Session, *, workspace_id: int, user: User, role: str
) -> WorkspaceMember:
    """PUT semantics: sets the role, adding an organization user who is not yet a member."""
    row = member(session, workspace_id=workspace_id, user_id=user.id)
    if row is None:
        row = WorkspaceMember(workspace_id=workspace_id, user_id=user.id, role=role)
        session.add(row)
    row.role = role
    session.flush()
    return row


def remove_member(session: Session, *, workspace_id: int, user_id: int) -> None:
    row = member(session, workspace_id=workspace_id, user_id=user_id)
    if row is None:
        raise NotFound(f"user {user_id} is not a member of workspace {workspace_id}")
    session.delete(row)
    session.flush()
