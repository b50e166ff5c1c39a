"""First-time setup of a state store: schema, organization, workspace, tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from reflow.db import migrate
from reflow.db.tables import Organization
from reflow.errors import Conflict
from reflow.services.auth import issue_token
from reflow.services.organization import adopt_initial_owner
from reflow.services.workspace_admin import new_workspace


@dataclass(frozen=True)
class InitResult:
    organization_id: int
    organization_token: str
    workspace_id: int
    workspace_token: str


def is_initialized(engine: Engine) -> bool:
    if not inspect(engine).has_table("organizations"):
        return False
    with Session(engine) as session:
        return session.scalar(select(Organization.id).limit(1)) is not None


def initialize(engine: Engine, *, organization_name: str = "Default organization") -> InitResult:
    """Create the schema and the first organization; refuse an initialized store."""
    if is_initialized(engine):
        raise Conflict("this state store is already initialized; nothing was changed")
    migrate.upgrade(engine)
    with Session(engine) as session, session.begin():
        org = Organization(name=organization_name)
        session.add(org)
        session.flush()
        workspace, workspace_token = new_workspace(session, organization_id=org.id)
        org_token = issue_token(session, kind="organization", organization_id=org.id)
        # The organization token is the personal access token of the first owner.
        adopt_initial_owner(session, organization_id=org.id)
        return InitResult(org.id, org_token, workspace.id, workspace_token)
