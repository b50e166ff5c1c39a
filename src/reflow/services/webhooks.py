"""Workspace webhooks: create (the secret is shown once), read, update, delete, and
the delivery log of each."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.connectors import outbound
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables_hooks import Webhook, WebhookDelivery
from reflow.errors import BadRequest
from reflow.services.events import EVENTS


def create(
    session: Session, *, workspace_id: int, vault: Vault, allow_http: bool, body: dict[str, Any]
) -> tuple[Webhook, str]:
    """A new webhook and its signing secret (returned this once, stored encrypted)."""
    for field in ("name", "endpoint"):
        if body.get(field) is None:
            raise BadRequest(f"{field} is required")
    secret = secrets.token_urlsafe(32)
    hook = Webhook(
        workspace_id=workspace_id,
        events=list(EVENTS),
        secret_encrypted=vault.encrypt({"secret": secret}),
    )
    _apply(hook, body, allow_http=allow_http)
    session.add(hook)
    session.flush()
    return hook, secret


def update(session: Session, *, hook: Webhook, allow_http: bool, body: dict[str, Any]) -> Webhook:
    if "secret" in body:
        raise BadRequest("secret cannot be changed; create a new webhook to rotate it")
    _apply(hook, body, allow_http=allow_http)
    session.flush()
    return hook


def _apply(hook: Webhook, body: dict[str, Any], *, allow_http: bool) -> None:
    if "name" in body:
        hook.name = _text(body["name"], "name", required=True) or ""
    if "description" in body:
        hook.description = _text(body["description"], "description", required=False)
    if "endpoint" in body:
        hook.endpoint = check_endpoint(body["endpoint"], allow_http=allow_http)
    if "events" in body:
        hook.events = _events(body["events"])


def _text(value: Any, field: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"{field} must be a {'non-empty ' if required else ''}string")
    if len(value) > 500 and field == "name":
        raise BadRequest("name must be at most 500 characters")
    return value


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadRequest(f"events must be a non-empty array of: {', '.join(EVENTS)}")
    unknown = [e for e in value if e not in EVENTS]
    if unknown:
        raise BadRequest(f"events has unknown event {unknown[0]!r}; known: {', '.join(EVENTS)}")
    return [e for e in EVENTS if e in value]


def check_endpoint(value: Any, *, allow_http: bool) -> str:
    """An https URL; plain http only for loopback hosts or when REFLOW_ALLOW_HTTP_WEBHOOKS."""
    if not isinstance(value, str) or len(value) > 2000:
        raise BadRequest("endpoint must be a URL string")
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise BadRequest("endpoint is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise BadRequest("endpoint must be an https:// URL")
    if parts.scheme == "http" and not (allow_http or _loopback(host)):
        raise BadRequest(
            "endpoint must be https (plain http is accepted only for loopback addresses, "
            "or when REFLOW_ALLOW_HTTP_WEBHOOKS is set)"
        )
    _check_address(host, parts.port or (443 if parts.scheme == "https" else 80))
    return value.strip()


def _check_address(host: str, port: int) -> None:
    """The outbound address policy, now (a 400 naming the address and the setting) and
    again when each delivery connects. A name that does not resolve yet is accepted:
    its deliveries fail and retry like any unreachable endpoint."""
    try:
        outbound.check_host(host, port)
    except outbound.OutboundRefused as exc:
        raise BadRequest(f"endpoint: {exc}") from None
    except OSError:
        pass


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def get(session: Session, *, workspace_id: int, webhook_id: int) -> Webhook:
    return get_scoped(session, Webhook, webhook_id, workspace_id, "webhook")


def list_(session: Session, *, workspace_id: int, params: PageParams) -> Page:
    stmt = select(Webhook).where(Webhook.workspace_id == workspace_id)
    return paginate(session, stmt, params, Webhook.id)


def delete(session: Session, *, hook: Webhook) -> None:
    """Its deliveries go with it, in one statement before the hook (the deliverer may be
    finishing some of them concurrently; loading them one by one would race it)."""
    session.execute(sa_delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    session.flush()


def list_deliveries(
    session: Session, *, hook: Webhook, params: PageParams, status: str | None = None
) -> Page:
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise BadRequest("status must be one of: pending, delivered, failed")
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    return paginate(session, stmt, params, WebhookDelivery.id)
