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

import json
from html import escape
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from reflow.api.deps import get_runtime, get_session
from reflow.db.tables_links import ConnectLink
from reflow.errors import ReflowError
from reflow.runtime import Runtime
from reflow.services import connect_links, connections

router = APIRouter(tags=["connect links"], include_in_schema=False)

PREFIX = "credentials."
_STYLE = (
    "body{font-family:sans-serif;max-width:40rem;margin:2rem auto}label{display:block;"
    "margin-top:1rem;font-weight:bold}input,select,textarea{width:100%;padding:.3rem}"
    ".hint{color:#555;font-size:.85rem}.error{color:#a00;border:1px solid #a00;padding:.5rem}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _error_page(exc: ReflowError) -> HTMLResponse:
    return _page("Link unavailable", f"<p class='error'>{escape(exc.message)}</p>", exc.status_code)


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


def _input(field: dict[str, Any], current: Any) -> str:
    name = escape(PREFIX + field["id"], quote=True)
    required = " required" if "required" in field["rules"] and current is None else ""
    if field["is_password_type_field"]:
        return f"<input type='password' name='{name}' autocomplete='off'{required}>"
    value = current if current is not None else field.get("default")
    if field["type"] == "boolean" or field.get("possible_values"):
        options = ["true", "false"] if field["type"] == "boolean" else field["possible_values"]
        chosen = json.dumps(value) if isinstance(value, bool) else value
        opts = "<option value=''></option>" + "".join(
            f"<option{' selected' if str(o) == str(chosen) else ''}>{escape(str(o))}</option>"
            for o in options
        )
        return f"<select name='{name}'{required}>{opts}</select>"
    shown = "" if value is None else (json.dumps(value) if field["json"] else str(value))
    if field["json"]:
        return f"<textarea name='{name}'{required}>{escape(shown)}</textarea>"
    kind = "number" if field["type"] in ("integer", "float") else "text"
    step = " step='any'" if field["type"] == "float" else ""
    return (
        f"<input type='{kind}'{step} name='{name}' value='{escape(shown, quote=True)}'{required}>"
    )


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
    rows = [
        "<label for='name'>Name</label>"
        f"<input id='name' name='name' value='{escape(name, quote=True)}'>"
    ]
    for field in fields:
        hint = field.get("hint") or ""
        if field["is_password_type_field"] and link.reauthorize:
            hint = (hint + " " if hint else "") + "Leave blank to keep the stored value."
        rows.append(
            f"<label>{escape(field['label'])}</label>{_input(field, current.get(field['id']))}"
            + (f"<div class='hint'>{escape(hint)}</div>" if hint else "")
        )
    action = "Re-authorize" if link.reauthorize else "Connect"
    err = f"<p class='error'>{escape(error)}</p>" if error else ""
    body = (
        f"{err}<p>{action} a {escape(link.type)} {link.kind}.</p>"
        f"<form method='post' action='?auth={escape(token, quote=True)}'>"
        + "".join(rows)
        + f"<p><button type='submit'>{action}</button></p></form>"
    )
    return _page(f"{action} {link.type}", body, status)


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


def _credentials(fields: list[dict[str, Any]], form: dict[str, str]) -> dict[str, Any]:
    """Submitted values by field id; a blank input is unset (on re-authorize: keep)."""
    out: dict[str, Any] = {}
    for field in fields:
        raw = form.get(PREFIX + field["id"], "").strip()
        if not raw:
            continue
        if field["type"] == "boolean":
            out[field["id"]] = raw == "true"
        elif field["json"]:
            try:
                out[field["id"]] = json.loads(raw)
            except json.JSONDecodeError:
                raise ReflowError(f"{field['label']} ({field['id']}) must be valid JSON") from None
        else:
            out[field["id"]] = raw
    return out


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
        credentials = _credentials(_fields(session, link, runtime), form)
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
    return _page(
        "Connected",
        f"<p>The {escape(link.type)} {link.kind} is connected. You can close this page.</p>",
    )
