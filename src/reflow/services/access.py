"""Who may do what on workspace endpoints.

A workspace API key has full access to its workspace. A personal access token reaches
a workspace endpoint by naming the workspace in the ``X-Workspace-Id`` header; the
user's role in that workspace then decides: viewers read, operators also trigger and
cancel runs, editors and owners do everything.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from reflow.db.tables_org import WORKSPACE_ROLES
from reflow.errors import BadRequest, Forbidden
from reflow.services import organization
from reflow.services.auth import Principal

WORKSPACE_HEADER = "X-Workspace-Id"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Routes an operator may call besides reads: starting and stopping runs.
_OPERATE = re.compile(r"^(/api/v1)?/(syncs/\{[^}/]+\}/trigger|sync_runs/\{[^}/]+\}/cancel)$")


def required_role(method: str, route_path: str) -> str:
    if method.upper() in _READS:
        return "viewer"
    if _OPERATE.match(route_path):
        return "operator"
    return "editor"


def select_workspace(
    session: Session, *, principal: Principal, selection: str | None, need: str
) -> int:
    """The workspace a personal access token acts in, after checking the user's role
    there. Another organization's workspace is indistinguishable from a missing one."""
    if selection is None or not selection.strip():
        raise Forbidden(
            "this endpoint needs a workspace API key, or an organization token with the "
            f"{WORKSPACE_HEADER} header naming a workspace"
        )
    try:
        workspace_id = int(selection.strip())
    except ValueError:
        raise BadRequest(f"{WORKSPACE_HEADER} must be a workspace id") from None
    user = organization.acting_user(session, principal=principal)
    organization.workspace_in_org(
        session, organization_id=principal.organization_id, workspace_id=workspace_id
    )
    role = organization.workspace_role(session, user=user, workspace_id=workspace_id)
    if role is None:
        raise Forbidden(f"user {user.email} has no access to workspace {workspace_id}")
    if WORKSPACE_ROLES.index(role) < WORKSPACE_ROLES.index(need):
        raise Forbidden(
            f"the {role} role cannot do this in workspace {workspace_id}; it needs {need}"
        )
    return workspace_id
