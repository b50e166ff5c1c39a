"""Settings: webhooks, alerts, API keys, members and invitations, one's own password.

A secret created here (a webhook's signing secret, an API key, an accepted invitee's
first token) is shown once on the page that answers the form, never stored readable.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from reflow.console import forms
from reflow.console import session as cookies
from reflow.console.deps import Console, ConsoleRoute, checked_form, console, every, secret_key
from reflow.db.repo import PageParams
from reflow.db.tables import Workspace
from reflow.db.tables_org import Invitation, User
from reflow.errors import BadRequest, Forbidden, ReflowError
from reflow.services import (
    alerts,
    api_keys,
    invitations,
    organization,
    syncs,
    webhooks,
    workspace_admin,
)

router = APIRouter(route_class=ConsoleRoute)
_PAGE = PageParams(1, 100, "desc")


def _members(ui: Console) -> list[tuple[User, str]]:
    rows = workspace_admin.list_members(ui.session, workspace_id=ui.workspace_id, params=_PAGE)
    users = {u.id: u for u in ui.session.query(User).filter(
        User.id.in_([m.user_id for m in rows.items]))}
    return [(users[m.user_id], m.role) for m in rows.items if m.user_id in users]


def _settings(ui: Console, status: int = 200, **extra: Any) -> Response:
    values: dict[str, Any] = {"errors": {}, "secret": None, "secret_label": "", "form": {}}
    values.update(extra)
    found = every(lambda p: syncs.list_(ui.session, workspace_id=ui.workspace_id, params=p))
    return ui.page(
        "settings.html", status=status,
        hooks=webhooks.list_(ui.session, workspace_id=ui.workspace_id, params=_PAGE).items,
        alerts=alerts.list_instances(ui.session, workspace_id=ui.workspace_id,
                                     params=PageParams(1, 20, "desc")).items,
        syncs=found,
        configured=[(sync, alert) for sync in found for alert in sync.alert_attributes or []],
        alert_types=alerts.ALERT_TYPES, record_types=tuple(alerts.RECORD_TYPES),
        keys=api_keys.list_(ui.session, workspace_id=ui.workspace_id),
        members=_members(ui),
        invites=invitations.list_for_workspace(ui.session, workspace_id=ui.workspace_id,
                                               params=_PAGE).items,
        invite_emails=_invite_emails(ui),
        **values,
    )


def _invite_emails(ui: Console) -> dict[int, tuple[str, bool, str]]:
    """Workspace invitation id -> (email, claimed, acceptance link). Only organization
    admins get links: a link lets its holder do what accepting on their behalf does."""
    out = {}
    page = invitations.list_for_workspace(ui.session, workspace_id=ui.workspace_id, params=_PAGE)
    admin = ui.user is not None and ui.user.role == "admin"
    base = (ui.runtime.settings.public_url or str(ui.request.base_url)).rstrip("/")
    for grant in page.items:
        inv = ui.session.get(Invitation, grant.invitation_id)
        if inv is not None:
            code = cookies.invite_code(secret_key(ui.runtime), inv.id) if admin else ""
            link = f"{base}/invitations/accept?code={code}" if code else ""
            out[grant.id] = (inv.email, inv.claimed_at is not None, link)
    return out


def failed(ui: Console, exc: ReflowError, section: str, form: dict[str, str],
            known: set[str]) -> Response:
    ui.session.rollback()
    errors = {f"{section}.{k}": v for k, v in forms.field_errors(exc.message, known).items()}
    return _settings(ui, status=exc.status_code, errors=errors, form=form)


@router.get("/settings")
def settings(ui: Console = Depends(console)) -> Response:
    return _settings(ui)


@router.post("/settings/webhooks")
def create_webhook(form: dict[str, str] = Depends(checked_form),
                   ui: Console = Depends(console)) -> Response:
    ui.require("editor")
    body = {"name": form.get("name", "").strip() or None,
            "endpoint": form.get("endpoint", "").strip() or None,
            "description": form.get("description", "").strip() or None}
    try:
        hook, secret = webhooks.create(ui.session, workspace_id=ui.workspace_id, vault=ui.vault,
                                       allow_http=ui.runtime.settings.allow_http_webhooks,
                                       body=body)
    except ReflowError as exc:
        return failed(ui, exc, "webhook", form, {"name", "endpoint", "description"})
    ui.session.commit()
    return _settings(ui, secret=secret, secret_label=f"Signing secret of webhook {hook.name}")


@router.post("/settings/webhooks/{webhook_id}/delete")
def delete_webhook(webhook_id: int, _: dict[str, str] = Depends(checked_form),
                   ui: Console = Depends(console)) -> Response:
    ui.require("editor")
    hook = webhooks.get(ui.session, workspace_id=ui.workspace_id, webhook_id=webhook_id)
    webhooks.delete(ui.session, hook=hook)
    ui.session.commit()
    return RedirectResponse("/settings#webhooks", status_code=303)


def _require_owner(ui: Console) -> None:
    if ui.user is not None:
        organization.require_workspace_owner(ui.session, user=ui.user,
                                             workspace_id=ui.workspace_id)


@router.post("/settings/keys")
def create_key(_: dict[str, str] = Depends(checked_form),
               ui: Console = Depends(console)) -> Response:
    _require_owner(ui)
    workspace = ui.session.get(Workspace, ui.workspace_id)
    assert workspace is not None
    key = api_keys.issue(ui.session, workspace=workspace)
    ui.session.commit()
    return _settings(ui, secret=key, secret_label="New API key")


@router.post("/settings/keys/{token_id}/revoke")
def revoke_key(token_id: int, _: dict[str, str] = Depends(checked_form),
               ui: Console = Depends(console)) -> Response:
    _require_owner(ui)
    api_keys.revoke(ui.session, workspace_id=ui.workspace_id, token_id=token_id)
    ui.session.commit()
    return RedirectResponse("/settings#keys", status_code=303)


def _acting_user(ui: Console) -> User:
    if ui.user is None:
        raise Forbidden("inviting people needs an organization user: sign in with your email "
                        "and password or a personal access token, not a workspace API key")
    organization.require_workspace_owner(ui.session, user=ui.user, workspace_id=ui.workspace_id)
    return ui.user


@router.post("/settings/invitations")
def invite(form: dict[str, str] = Depends(checked_form),
           ui: Console = Depends(console)) -> Response:
    try:
        creator = _acting_user(ui)
        workspace = ui.session.get(Workspace, ui.workspace_id)
        assert workspace is not None
        emails = [e.strip() for e in form.get("emails", "").replace(",", " ").split() if e.strip()]
        invitations.invite_to_workspace(ui.session, workspace=workspace, creator=creator,
                                        body={"emails": emails, "role": form.get("role", "")})
    except ReflowError as exc:
        return failed(ui, exc, "invite", form, {"emails", "role", "email"})
    ui.session.commit()
    return RedirectResponse("/settings#members", status_code=303)


@router.post("/settings/invitations/{grant_id}/accept")
def accept(grant_id: int, form: dict[str, str] = Depends(checked_form),
           ui: Console = Depends(console)) -> Response:
    """An organization admin accepts on the invitee's behalf and sets their first
    password (Reflow sends no email); both are handed over like any secret."""
    try:
        admin = _acting_user(ui)
        organization.require_admin(admin)
        grant = invitations.get_for_workspace(ui.session, workspace_id=ui.workspace_id,
                                              invitation_id=grant_id)
        invitation = invitations.get(ui.session, organization_id=admin.organization_id,
                                     invitation_id=grant.invitation_id)
        user, token = invitations.accept(ui.session, invitation=invitation,
                                         password=form.get("password", ""))
    except ReflowError as exc:
        return failed(ui, exc, f"accept{grant_id}", form, {"password"})
    ui.session.commit()
    return _settings(ui, secret=token,
                     secret_label=f"{user.email} can now sign in with the password you set, "
                                  "or with this personal access token")


@router.post("/settings/password")
def change_password(form: dict[str, str] = Depends(checked_form),
                    ui: Console = Depends(console)) -> Response:
    try:
        if ui.user is None:
            raise Forbidden("a workspace API key has no password")
        if ui.user.password_hash is not None and organization.user_by_password(
                ui.session, email=ui.user.email, password=form.get("current", "")) != ui.user:
            raise BadRequest("current: the current password is wrong")
        if form.get("password", "") != form.get("confirm", ""):
            raise BadRequest("confirm: the two new passwords differ")
        organization.set_password(ui.session, user=ui.user, password=form.get("password", ""))
    except ReflowError as exc:
        return failed(ui, exc, "password", {}, {"current", "password", "confirm"})
    ui.session.commit()
    return _settings(ui, notice="Your password is changed.")
