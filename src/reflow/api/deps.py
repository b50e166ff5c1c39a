"""Request-scoped dependencies: the runtime, a database session, the caller."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from reflow.crypto import Vault
from reflow.db.tables_org import User
from reflow.errors import BadRequest, Forbidden, Unauthorized
from reflow.runtime import Runtime
from reflow.services import access
from reflow.services.auth import Principal, authenticate
from reflow.services.organization import acting_user


# Both are ``async``: FastAPI runs a plain ``def`` dependency on a worker thread, and
# each such hop (two for a generator) cost more than the work here. Creating a session
# does no I/O (it connects on first use, in the endpoint's thread); closing it returns
# the connection to the pool.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_session(runtime: Runtime = Depends(get_runtime)) -> AsyncIterator[Session]:
    with runtime.sessions() as session:
        yield session


def bearer_token(request: Request) -> str | None:
    """``Authorization: Bearer <token>``, or HTTP Basic with user ``bearer`` and the
    token as password (the form dagster-census and the old Census docs use)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed Basic credentials") from None
        return password if user.lower() == "bearer" else None
    return None


@dataclass
class WorkspaceContext:
    session: Session
    runtime: Runtime
    workspace_id: int
    principal: Principal

    @property
    def vault(self) -> Vault:
        return self.runtime.vault

    def commit(self) -> None:
        self.session.commit()


def workspace_context(
    request: Request,
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> WorkspaceContext:
    principal = authenticate(session, token=bearer_token(request))
    if principal.workspace_id is None:
        # A personal access token names its workspace in a header; its user's role
        # there decides (services/access.py). Workspace API keys keep full access.
        route = request.scope.get("route")
        workspace_id = access.select_workspace(
            session,
            principal=principal,
            selection=request.headers.get(access.WORKSPACE_HEADER),
            need=access.required_role(request.method, getattr(route, "path", request.url.path)),
        )
        session.commit()  # the initial owner may have been materialized on first use
        return WorkspaceContext(session, runtime, workspace_id, principal)
    return WorkspaceContext(session, runtime, principal.workspace_id, principal)


@dataclass
class OrganizationContext:
    """A personal access token's caller on the Organization API."""

    session: Session
    runtime: Runtime
    organization_id: int
    user: User

    @property
    def vault(self) -> Vault:
        return self.runtime.vault

    def commit(self) -> None:
        self.session.commit()


def organization_context(
    request: Request,
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> OrganizationContext:
    principal = authenticate(session, token=bearer_token(request))
    if principal.kind != "organization":
        raise Forbidden(
            "this endpoint needs a personal access (organization) token, not a workspace API key"
        )
    user = acting_user(session, principal=principal)
    session.commit()  # the initial owner may have been materialized on first use
    return OrganizationContext(session, runtime, principal.organization_id, user)


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}`` (Airflow posts none)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body
