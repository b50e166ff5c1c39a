"""Sync and segment management links (Census Embedded): scoped, expiring capabilities
to create or edit one sync (or segment) without an API token.

A link's token is looked up by its SHA-256 hash; an encrypted copy lets list/fetch
show ``uri`` again (Census's embedded demo reuses links it lists). A revoked or expired
link, a used create-link, or an edit-link whose sync is gone, grants nothing (410)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from sqlalchemy.orm import Session

from reflow.crypto import Vault
from reflow.db.tables import Sync, utcnow
from reflow.db.tables_hooks import ManagementLink
from reflow.errors import Gone
from reflow.services.link_tokens import LinkStore, new_token, redirect_uri
from reflow.services.link_tokens import expired as expired  # re-exported for callers
from reflow.services.link_tokens import token_of as token_of

Kind = Literal["sync", "segment"]
TYPES = {"sync": "SyncConfiguration", "segment": "SegmentConfiguration"}
WIZARD_PATHS = {
    "sync": "/api/v1/embedded/sync_wizard",
    "segment": "/api/v1/embedded/segment_wizard",
}

_store = LinkStore(ManagementLink, "management link")
get = _store.get
list_ = _store.list_
revoke = _store.revoke


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
    edit = sync_id is not None or segment_id is not None
    link = ManagementLink(
        workspace_id=workspace_id,
        kind=kind,
        purpose="edit" if edit else "create",
        **new_token(vault),
        expiration=(now or utcnow()) + dt.timedelta(seconds=ttl_seconds),
        redirect_uri=uri,
        sync_id=sync_id,
        segment_id=segment_id,
        source_id=source_id,
    )
    session.add(link)
    session.flush()
    return link


def resolve(
    session: Session, *, token: str | None, kind: Kind, now: dt.datetime | None = None
) -> ManagementLink:
    """The live link ``token`` names; 404 when unknown, 410 when it grants nothing."""
    link = _store.live(session, token, ManagementLink.kind == kind, now=now)
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
    _store.mark_used(session, link=link, now=now, sync_id=sync_id)
