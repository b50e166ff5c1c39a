"""The server-rendered page a connect link's ``uri`` opens (Reflow's stand-in for
Census's hosted connect flow). No API token: the link's token is the capability.

* ``GET  /connect?auth=<token>``: a form generated from the type's configuration
  fields (secrets as password inputs; a re-authorize link shows the stored non-secret
  values, never a secret).
* ``POST /connect?auth=<token>`` (form-encoded): creates or re-authorizes the
  connection with the usual connection test, records it on the link and redirects to
  ``redirect_uri`` (303). A failed test saves nothing and shows the form again (400).

Unknown tokens answer 404; revoked, expired or used links 410; both as HTML.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from reflow.api.deps import get_runtime, get_session
from reflow.console.forms import parse_credentials, shown_value
from reflow.console.templating import CONNECT_HEADERS, render
from reflow.db.tables_links import ConnectLink
from reflow.errors import ReflowError
from reflow.runtime import Runtime
from reflow.services import connect_links, connections

router = APIRouter(tags=["connect links"], include_in_schema=False)

PREFIX = "credentials."


def _page(title: str, status: int = 200, **values: Any) -> HTMLResponse:
    """The console's templates and stylesheet (autoescaped), without its navigation. Forms
    may redirect to the link's redirect_uri, so CSP form-action is not limited to here."""
    values = {"error": None, "message": None, **values}
    return render("connect.html", status=status, headers=CONNECT_HEADERS, request=None,
                  console=None, title=title, **values)


def _error_page(exc: ReflowError) -> HTMLResponse:
    return _page("Link unavailable", exc.status_code, error=exc.message)


def _fields(session: Session, link: ConnectLink, runtime: Runtime) -> list[dict[str, Any]]:
    cls = connect_links.connector_class(session, link=link, vault=runtime.vault)
    if cls is None:
        raise ReflowError(f"{link.kind} type {link.type!r} no longer exists")
    config = connections.configuration_fields(cls.config_model)  # type: ignore[attr-defined]
    props = config["json_schema"].get("properties", {})
    for field in config["fields"]:
        field["json"] = _json_kind(props.get(field["id"], {}))
    return config["fields"]


def _json_kind(prop: dict[str, Any]) -> bool:
    kinds = {prop.get("type")} | {o.get("type") for o in prop.get("anyOf", [])}
    return bool(kinds & {"object", "array"})


def _form(
    session: Session,
    link: ConnectLink,
    runtime: Runtime,
    token: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    fields = _fields(session, link, runtime)
    current: dict[str, Any] = {}
    name = ""
    if link.reauthorize:
        conn = connect_links.existing(session, link)
        current, name = (dict(conn.connection_details), conn.name) if conn else ({}, "")
    for field in fields:
        field["input_name"] = PREFIX + field["id"]
        field["value"] = shown_value(field, current.get(field["id"]))
        if link.reauthorize and field["is_password_type_field"]:
            field["rules"] = []  # blank keeps the stored secret
    action = "Re-authorize" if link.reauthorize else "Connect"
    return _page(f"{action} {link.type}", status, error=error, fields=fields, name=name,
                 token=token, action=action, reauthorize=link.reauthorize, field_errors={},
                 message=f"{action} a {link.type} {link.kind}.")


@router.get(connect_links.PAGE_PATH)
def connect_page(
    auth: str | None = Query(None),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    try:
        link = connect_links.resolve(session, token=auth)
        return _form(session, link, runtime, auth or "")
    except ReflowError as exc:
        return _error_page(exc)


async def _form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _test_errors(conn: Any) -> str:
    steps = (conn.last_test_results or {}).get("steps", [])
    messages = [s["error"]["message"] for s in steps if s["status"] == "failed"]
    return "Connection test failed: " + ("; ".join(m for m in messages if m) or "unknown error")


@router.post(connect_links.PAGE_PATH)
def submit_connect_page(
    auth: str | None = Query(None),
    form: dict[str, str] = Depends(_form_data),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    try:
        link = connect_links.resolve(session, token=auth)
    except ReflowError as exc:
        return _error_page(exc)
    token = auth or ""
    try:
        credentials = parse_credentials(_fields(session, link, runtime), form)
        conn = connect_links.submit(
            session,
            link=link,
            runtime=runtime,
            credentials=credentials,
            name=form.get("name", "").strip() or None,
        )
        if not conn.last_test_succeeded:
            message = _test_errors(conn)
            session.rollback()  # nothing saved; the link stays usable
            return _form(session, link, runtime, token, message, 400)
        connect_links.mark_used(session, link=link, connection_id=conn.id)
        session.commit()
    except ReflowError as exc:
        session.rollback()
        if exc.status_code == 410:
            return _error_page(exc)
        return _form(session, link, runtime, token, exc.message, 400)
    if link.redirect_uri:
        return RedirectResponse(link.redirect_uri, status_code=303)
    return _page("Connected",
                 message=f"The {link.type} {link.kind} is connected. You can close this page.")
