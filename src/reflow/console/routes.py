"""The web console at ``/``: sign-in, sign-out, static files, and the page routers.

Mounted by ``api/app.py`` with one ``include_router``; the API stays under ``/api/v1``.
Pages call the same services the API routers call, with the session's workspace id.
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.api.deps import get_runtime, get_session
from reflow.console import (
    pages_alerts,
    pages_connections,
    pages_delete,
    pages_invite,
    pages_models,
    pages_settings,
    pages_sync_edit,
    pages_syncs,
    pages_wizard,
)
from reflow.console import session as cookies
from reflow.console.deps import (
    Console,
    ConsoleRoute,
    SignInRequired,
    checked_form,
    console,
    form_data,
    secure,
    set_session_cookie,
    workspaces_of,
)
from reflow.console.templating import render
from reflow.console.throttle import SignInThrottle
from reflow.crypto import hash_token
from reflow.db.tables import ApiToken
from reflow.db.tables_org import User
from reflow.errors import NotFound, ReflowError, Unauthorized
from reflow.runtime import Runtime
from reflow.services import organization
from reflow.services.auth import authenticate

STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png",
                 ".svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
_THROTTLE_LOCK = threading.Lock()


@router.get("/static/{name:path}")
def static(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    inside = STATIC.resolve() in path.parents
    if not inside or not path.is_file() or path.suffix not in _STATIC_TYPES:
        raise NotFound(f"no static file {name}")
    return FileResponse(path, media_type=_STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=3600"})


@router.get("/")
def home(_: Console = Depends(console)) -> Response:
    return RedirectResponse("/syncs", status_code=303)


def _safe_next(value: str | None) -> str:
    """Only a path of this site: never ``//host`` or ``https://...`` (open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/syncs"
    return value


@router.get("/signin")
def signin_page(
    request: Request, next: str | None = Query(None), session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    """Someone already signed in goes straight on (the address ``make run`` prints)."""
    try:
        console(request, session, runtime)
    except SignInRequired:
        return _signin_form(request, runtime, _safe_next(next))
    return RedirectResponse(_safe_next(next), status_code=303)


def _signin_form(
    request: Request, runtime: Runtime, target: str, errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None, status: int = 200,
) -> Response:
    nonce = request.cookies.get(cookies.SIGNIN_COOKIE) or cookies.new_session("x", 0, 0).csrf
    response = render("signin.html", status=status, request=request, console=None, next=target,
                      csrf=nonce, errors=errors or {}, values=values or {})
    response.set_cookie(cookies.SIGNIN_COOKIE, nonce, httponly=True, samesite="lax",
                        secure=secure(request, runtime), path="/signin")
    return response


@router.post("/signin")
def signin(
    request: Request,
    form: dict[str, str] = Depends(form_data),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    target = _safe_next(form.get("next"))
    if not cookies.same_token(request.cookies.get(cookies.SIGNIN_COOKIE), form.get("csrf")):
        expired = {"form": "The sign-in form expired; try again."}
        return _signin_form(request, runtime, target, expired, status=400)
    field = "token" if form.get("token", "").strip() else "password"
    keys = SignInThrottle.keys(request.client.host if request.client else "?",
                               None if field == "token" else form.get("email", "").strip())
    limiter = _throttle(request)
    wait = limiter.retry_after(keys)
    if wait is not None:
        response = _signin_form(
            request, runtime, target, {"form": "Too many failed sign-ins; try again in "
                                       f"{(wait + 59) // 60} min."},
            {"email": form.get("email", "")}, status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        state = _authenticate(session, form)
    except ReflowError as exc:
        if exc.status_code == 401:
            limiter.failed(keys)
        return _signin_form(request, runtime, target, {field: exc.message},
                            {"email": form.get("email", "")}, status=exc.status_code)
    limiter.succeeded(keys)
    session.commit()
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, runtime, state)
    response.delete_cookie(cookies.SIGNIN_COOKIE, path="/signin")
    return response


def _throttle(request: Request) -> SignInThrottle:
    """The app's failed sign-in counts (one per app, so each test app starts afresh)."""
    state = request.app.state
    with _THROTTLE_LOCK:  # two first sign-ins at once must share one
        if getattr(state, "signin_throttle", None) is None:
            state.signin_throttle = SignInThrottle()
        throttle: SignInThrottle = state.signin_throttle
    return throttle


def _authenticate(session: Session, form: dict[str, str]) -> cookies.ConsoleSession:
    token = form.get("token", "").strip()
    if token:
        principal = authenticate(session, token=token)  # the API's own check
        if principal.kind == "workspace" and principal.workspace_id is not None:
            row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            assert row is not None
            return cookies.new_session("token", row.id, principal.workspace_id)
        user = organization.acting_user(session, principal=principal)
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        assert row is not None
        return cookies.new_session("pat", row.id, _first_workspace(session, user))
    email, password = form.get("email", "").strip(), form.get("password", "")
    if not email or not password:
        raise Unauthorized("enter an API token, or an email and password")
    found = organization.user_by_password(session, email=email, password=password)
    if found is None:
        raise Unauthorized("unknown email or wrong password")
    return _user_session(session, found)


def _user_session(session: Session, user: User) -> cookies.ConsoleSession:
    return cookies.new_session("user", user.id, _first_workspace(session, user))


def _first_workspace(session: Session, user: User) -> int:
    for workspace_id in workspaces_of(session, user):
        return workspace_id
    raise Unauthorized(f"user {user.email} has no access to any workspace")


@router.post("/signout")
def signout(request: Request, _: dict[str, str] = Depends(checked_form)) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(cookies.COOKIE, path="/")
    return response


@router.post("/workspace")
def switch_workspace(
    request: Request,
    form: dict[str, str] = Depends(checked_form),
    ui: Console = Depends(console),
) -> Response:
    """An organization user moves to another workspace they have a role in."""
    if ui.user is None:
        raise NotFound("an API key belongs to one workspace")
    wanted = form.get("workspace_id", "")
    if not wanted.isdigit() or int(wanted) not in workspaces_of(ui.session, ui.user):
        raise NotFound(f"workspace {wanted} not found")
    state = cookies.new_session(ui.kind, ui.subject_id, int(wanted))
    response = RedirectResponse("/syncs", status_code=303)
    set_session_cookie(response, request, ui.runtime, state)
    return response


# The wizard first: its /syncs/new must match before /syncs/{sync_id}.
for _module in (pages_wizard, pages_syncs, pages_connections, pages_models, pages_settings,
                pages_invite, pages_delete, pages_sync_edit, pages_alerts):
    router.include_router(_module.router)
