"""Who is looking at the console, and how console routes fail.

A console request resolves its session cookie to the same things an API request resolves
its bearer token to: a workspace id and, for an organization user, the user's role there
(services/access.py's ladder: viewers read, operators trigger and cancel, editors change).
Every page then calls the services the API routers call with that workspace id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.api.deps import get_runtime, get_session
from reflow.console import session as cookies
from reflow.console.templating import render
from reflow.db.repo import Page, PageParams
from reflow.db.tables import ApiToken, Workspace
from reflow.db.tables_org import WORKSPACE_ROLES, User
from reflow.errors import Forbidden, ReflowError
from reflow.runtime import Runtime
from reflow.services import organization

log = logging.getLogger(__name__)


class SignInRequired(Exception):
    """No valid session: go to sign-in, then back to ``next``."""


@dataclass
class Console:
    request: Request
    session: Session
    runtime: Runtime
    workspace_id: int
    workspace_name: str
    who: str
    role: str
    csrf: str
    user: User | None = None
    kind: str = "token"  # what signed in: "token" (workspace key), "pat" or "user"
    subject_id: int = 0
    #: Why a delete was refused (in use...), shown inline beside the page's delete form.
    delete_error: str | None = None

    @property
    def vault(self) -> Any:
        return self.runtime.vault

    def can(self, need: str) -> bool:
        return WORKSPACE_ROLES.index(self.role) >= WORKSPACE_ROLES.index(need)

    def require(self, need: str) -> None:
        if not self.can(need):
            raise Forbidden(f"the {self.role} role cannot do this; it needs {need}")

    def workspaces(self) -> list[tuple[int, str]]:
        """(id, name) of the workspaces an organization user may switch to."""
        if self.user is None:
            return []
        ids = workspaces_of(self.session, self.user)
        rows = self.session.scalars(select(Workspace).where(Workspace.id.in_(ids)))
        return sorted((w.id, w.name) for w in rows)

    def page(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return render(template, status=status, console=self, request=self.request, **values)


def workspaces_of(session: Session, user: User) -> list[int]:
    ids = session.scalars(select(Workspace.id).where(
        Workspace.organization_id == user.organization_id).order_by(Workspace.id))
    return [i for i in ids if organization.workspace_role(session, user=user, workspace_id=i)]


def every(fetch: Callable[[PageParams], Page]) -> list[Any]:
    """Every item of a paginated service listing (a workspace's syncs, sources and
    models fit in memory; the console filters and counts them itself)."""
    items, page = [], 1
    while True:
        chunk = fetch(PageParams(page=page, per_page=100, order="asc"))
        items += chunk.items
        if page >= chunk.last_page:
            return items
        page += 1


def secret_key(runtime: Runtime) -> str:
    return runtime.settings.resolved_secret_key()


def secure(request: Request, runtime: Runtime) -> bool:
    """Secure cookies when served over HTTPS (directly, or as the public URL says)."""
    public = runtime.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_session_cookie(response: Response, request: Request, runtime: Runtime,
                       state: cookies.ConsoleSession) -> None:
    response.set_cookie(cookies.COOKIE, cookies.encode(secret_key(runtime), state),
                        httponly=True, samesite="lax", secure=secure(request, runtime),
                        max_age=cookies.MAX_AGE_SECONDS, path="/")


def console(
    request: Request,
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> Console:
    state = cookies.decode(secret_key(runtime), request.cookies.get(cookies.COOKIE))
    if state is None:
        raise SignInRequired()
    workspace = session.get(Workspace, state.workspace_id)
    if workspace is None:
        raise SignInRequired()
    if state.kind == "token":
        token = session.get(ApiToken, state.subject_id)
        if token is None or token.kind != "workspace" or token.workspace_id != workspace.id:
            raise SignInRequired()  # revoked since sign-in
        return Console(request, session, runtime, workspace.id, workspace.name,
                       f"API key of {workspace.name}", "owner", state.csrf, None, "token",
                       state.subject_id)
    user = _user_of(session, state)
    if user is None or user.organization_id != workspace.organization_id:
        raise SignInRequired()
    role = organization.workspace_role(session, user=user, workspace_id=workspace.id)
    if role is None:
        raise SignInRequired()
    return Console(request, session, runtime, workspace.id, workspace.name, user.email, role,
                   state.csrf, user, state.kind, state.subject_id)


def _user_of(session: Session, state: cookies.ConsoleSession) -> User | None:
    """A password session names the user; a personal-access-token session names the
    token, so revoking or deleting the token ends the console session too."""
    if state.kind == "user":
        return session.get(User, state.subject_id)
    token = session.get(ApiToken, state.subject_id)
    if token is None or token.kind != "organization" or token.user_id is None:
        return None
    return session.get(User, token.user_id)


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


async def checked_form(request: Request, ui: Console = Depends(console)) -> dict[str, str]:
    """The posted form after its CSRF token matched the session's."""
    form = await form_data(request)
    if not cookies.same_token(ui.csrf, form.get("csrf")):
        raise Forbidden("the form expired or did not come from this console; reload and retry")
    return form


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/signin?next={quote(target, safe='')}"


class ConsoleRoute(APIRoute):
    """Console failures are pages, never the API's JSON envelope: a missing session
    redirects to sign-in, a ReflowError shows its message, anything else a plain
    'something went wrong' page (the traceback goes to the log only)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                if request.headers.get("HX-Request"):
                    # A polled fragment: send the whole page to sign-in and back, rather
                    # than swapping the sign-in form into a corner of the page.
                    back = request.headers.get("HX-Current-URL", "")
                    path = "/" + back.split("://", 1)[-1].partition("/")[2] if back else "/"
                    target = f"/signin?next={quote(path, safe='')}"
                    return Response(status_code=200, headers={"HX-Redirect": target})
                if request.method != "GET":
                    return RedirectResponse("/signin", status_code=303)
                return RedirectResponse(sign_in_url(request), status_code=303)
            except ReflowError as exc:
                return render("error.html", status=exc.status_code, request=request,
                              message=exc.message, code=exc.status_code, console=None)
            except RequestValidationError:
                # A malformed path or query (``/syncs/abc``): no such page.
                return render("error.html", status=404, request=request, code=404,
                              message=f"no page at {request.url.path}", console=None)
            except Exception:
                log.exception("console page %s failed", request.url.path)
                return render("error.html", status=500, request=request, code=500,
                              message="Something went wrong; the server log has the details.",
                              console=None)

        return guarded
