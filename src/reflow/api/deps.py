"""Request-scoped dependencies: the runtime, a database session, the caller."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy.orm import Session

from reflow.api.edge import parse_json, token_from_header
from reflow.crypto import Vault
from reflow.db.tables_org import User
from reflow.errors import BadRequest, Forbidden
from reflow.runtime import Runtime
from reflow.services import access
from reflow.services.auth import Principal, authenticate
from reflow.services.organization import acting_user

R = TypeVar("R")


# Both are ``async``: FastAPI runs a plain ``def`` dependency on a worker thread, and
# each such hop (two for a generator) cost more than the work here. Creating a session
# does no I/O (it connects on first use, in the endpoint's thread); closing it returns
# the connection to the pool.
async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


def runtime_of(request: Request) -> Runtime:
    """The runtime, for code that has the request but is not a dependency."""
    return request.app.state.runtime  # type: ignore[no-any-return]


async def get_session(runtime: Runtime = Depends(get_runtime)) -> AsyncIterator[Session]:
    with runtime.sessions() as session:
        yield session


def polled_read(endpoint: Callable[..., R]) -> Callable[..., Awaitable[R]]:
    """``endpoint`` (a ``def`` that only reads, taking ``ctx``): one of the reads clients
    poll (a sync, its runs). It runs on the event loop: it is CPU under the GIL either
    way, and the hop to a worker thread and back (two cross-thread wake-ups, and a wait
    of up to the 5 ms switch interval for the GIL at each round trip while the loop
    parses other requests) cost more than the read. On PostgreSQL it reads through
    ``runtime.polled_reads``: autocommit (each statement sees its own snapshot, as under
    READ COMMITTED; no BEGIN and ROLLBACK round trips), its own small pool, a statement
    timeout bounding how long the loop can be held.

    It first yields to the loop once: a request that never waits would otherwise run
    from the edge to its response in one go, so a backlog would never be seen waiting
    for a slot by ``api/overload.py`` and would queue instead of being refused."""

    # FastAPI is shown ``ctx`` as the request itself (or, as it hands the request to one
    # parameter only, not at all when the endpoint takes the request already): a
    # workspace key the edge resolved needs no dependency to solve (workspace_context's
    # chain, with the generator that opens and closes a session, cost ~460 Python calls
    # a request), and the session is opened here, on the engine the read uses. The
    # endpoint still receives the ``WorkspaceContext`` workspace_context would give.
    signature = inspect.signature(endpoint, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != "ctx"]
    request_param = next((p.name for p in params if p.annotation is Request), None)
    if request_param is None:
        request_param = "ctx"
        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Request))

    @functools.wraps(endpoint)
    async def run(*args: Any, **kwargs: Any) -> R:
        await asyncio.sleep(0)
        request: Request = kwargs[request_param]
        runtime = runtime_of(request)
        principal = request.scope.get("state", {}).get("principal")
        if isinstance(principal, Principal) and principal.workspace_id is not None:
            workspace_id = principal.workspace_id
        else:
            principal, workspace_id = await run_in_threadpool(_resolve, request, runtime)
        # SQLite: WAL mode never makes a reader wait for a writer.
        with (runtime.polled_reads or runtime.sessions)() as session:
            ctx = WorkspaceContext(session, runtime, workspace_id, principal)
            return endpoint(*args, **{**kwargs, "ctx": ctx})

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    run.polled_read = True  # type: ignore[attr-defined]  # api/polled.py dispatches it
    return run


def _resolve(request: Request, runtime: Runtime) -> tuple[Principal, int]:
    """A caller the edge did not resolve to a workspace (a personal access token: its
    role in the workspace it names is read from the database), on a worker thread."""
    with runtime.sessions() as session:
        ctx = resolve_workspace(request, session, runtime)
        return ctx.principal, ctx.workspace_id


def bearer_token(request: Request) -> str | None:
    """``Authorization: Bearer <token>``, or HTTP Basic with user ``bearer`` and the
    token as password (the form dagster-census and the old Census docs use)."""
    return token_from_header(request.headers.get("authorization", ""))


def caller(request: Request, session: Session) -> Principal:
    """The principal ``api/edge.py`` resolved before the body was read; looked up
    here only when the app runs without the edge (never twice per request)."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    return authenticate(session, token=bearer_token(request))


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


async def workspace_context(
    request: Request,
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> WorkspaceContext:
    """A workspace API key the edge resolved names its workspace: no statement, no
    worker thread. Anything else (a personal access token, whose role in the workspace
    it names is read from the database) is resolved on a worker thread."""
    principal = request.scope.get("state", {}).get("principal")
    if isinstance(principal, Principal) and principal.workspace_id is not None:
        return WorkspaceContext(session, runtime, principal.workspace_id, principal)
    return await run_in_threadpool(resolve_workspace, request, session, runtime)


def resolve_workspace(request: Request, session: Session, runtime: Runtime) -> WorkspaceContext:
    """``workspace_context`` on this thread, with the statements it needs."""
    principal = caller(request, session)
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
    principal = caller(request, session)
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
    body = parse_json(raw, max_depth=runtime_of(request).settings.max_json_depth)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def check_query_length(body: dict[str, Any], ctx: WorkspaceContext) -> None:
    """A model's SQL is sent to the warehouse as is; bound it before anything does."""
    query, limit = body.get("query"), ctx.runtime.settings.max_model_query_chars
    if isinstance(query, str) and len(query) > limit:
        raise BadRequest(f"query: longer than the limit of {limit} characters")


def body_of(model: type[BaseModel]) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """``json_object``, marked with the ``model`` that ``/openapi.json`` shows for the
    body (api/openapi.py); the dict still goes to the service, which validates it."""

    async def body(request: Request) -> dict[str, Any]:
        return await json_object(request)

    body.body_model = model  # type: ignore[attr-defined]
    return body
