"""Sync and segment management links (Census Embedded): scoped, expiring capabilities
to create or edit one sync (or segment) without an API token.

A link's token is looked up by its SHA-256 hash; an encrypted copy lets list/fetch
show ``uri`` again (Census's embedded demo reuses links it lists). A revoked or expired
link, a used create-link, or an edit-link whose sync is gone, grants nothing (410)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables import Sync, utcnow
from reflow.db.tables_hooks import ManagementLink
from reflow.errors import BadRequest, Gone, NotFound

Kind = Literal["sync", "segment"]
TYPES = {"sync": "SyncConfiguration", "segment": "SegmentConfiguration"}
WIZARD_PATHS = {
    "sync": "/api/v1/embedded/sync_wizard",
    "segment": "/api/v1/embedded/segment_wizard",
}


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def redirect_uri(body: dict[str, Any]) -> str | None:
    value = body.get("redirect_uri")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise BadRequest("redirect_uri must be a URL string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest("redirect_uri must be an absolute http(s) URL")
    return value


def create(
    session: Session,
    *,
    workspace_id: int,
    vault: Vault,
    kind: Kind,
    ttl_seconds: int,
    body: dict[str, Any],
    sync_id: int | None = None,
    segment_id: int | None = None,
    source_id: int | None = None,
    now: dt.datetime | None = None,
) -> ManagementLink:
    """A create link (no target) or an edit link (``sync_id`` / ``segment_id``)."""
    uri = redirect_uri(body)
    token = secrets.token_urlsafe(32)
    edit = sync_id is not None or segment_id is not None
    link = ManagementLink(
        workspace_id=workspace_id,
        kind=kind,
        purpose="edit" if edit else "create",
        token_hash=hash_link_token(token),
        token_encrypted=vault.encrypt({"token": token}),
        expiration=(now or utcnow()) + dt.timedelta(seconds=ttl_seconds),
        redirect_uri=uri,
        sync_id=sync_id,
        segment_id=segment_id,
        source_id=source_id,
    )
    session.add(link)
    session.flush()
    return link


def token_of(link: ManagementLink, vault: Vault) -> str:
    return str(vault.decrypt(link.token_encrypted)["token"])


def expired(link: ManagementLink, now: dt.datetime | None = None) -> bool:
    expiration = link.expiration
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=dt.UTC)
    return (now or utcnow()) >= expiration


def get(session: Session, *, workspace_id: int, kind: Kind, link_id: int) -> ManagementLink:
    link = get_scoped(session, ManagementLink, link_id, workspace_id, f"{kind} management link")
    if link.kind != kind:
        raise NotFound(f"{kind} management link {link_id} not found")
    return link


def list_(session: Session, *, workspace_id: int, kind: Kind, params: PageParams) -> Page:
    stmt = select(ManagementLink).where(
        ManagementLink.workspace_id == workspace_id, ManagementLink.kind == kind
    )
    return paginate(session, stmt, params, ManagementLink.id)


def revoke(session: Session, *, link: ManagementLink) -> ManagementLink:
    link.revoked = True
    session.flush()
    return link


def resolve(
    session: Session, *, token: str | None, kind: Kind, now: dt.datetime | None = None
) -> ManagementLink:
    """The live link ``token`` names; 404 when unknown, 410 when it grants nothing."""
    if not token:
        raise NotFound("management link not found")
    link = session.scalar(
        select(ManagementLink).where(
            ManagementLink.token_hash == hash_link_token(token), ManagementLink.kind == kind
        )
    )
    if link is None:
        raise NotFound("management link not found")
    if link.revoked:
        raise Gone("this management link was revoked")
    if expired(link, now):
        raise Gone("this management link has expired")
    if link.purpose == "create" and link.used_at is not None:
        raise Gone(f"this management link was already used to create {kind} {link.sync_id}")
    if link.kind == "sync" and link.purpose == "edit" and session.get(Sync, link.sync_id) is None:
        raise Gone(f"sync {link.sync_id} that this link edits no longer exists")
    return link


def capability(link: ManagementLink) -> dict[str, Any]:
    """What the link allows, for the embedded wizard."""
    target = "sync_id" if link.kind == "sync" else "segment_id"
    return {
        "type": TYPES[link.kind],
        "action": link.purpose,
        "workspace_id": link.workspace_id,
        target: link.sync_id if link.kind == "sync" else link.segment_id,
        "expiration": link.expiration,
        "redirect_uri": link.redirect_uri,
    }


def mark_used(
    session: Session, *, link: ManagementLink, sync_id: int, now: dt.datetime | None = None
) -> None:
    """Conditional, so two concurrent uses of one create link cannot both create."""
    result = session.execute(
        update(ManagementLink)
        .where(ManagementLink.id == link.id, ManagementLink.used_at.is_(None))
        .values(sync_id=sync_id, used_at=now or utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Gone("this management link was already used")
    session.refresh(link)
