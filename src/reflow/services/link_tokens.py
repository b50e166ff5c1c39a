"""What every capability link shares, whether a sync/segment management link
(``services/links.py``) or a source/destination connect link (``connect_links.py``).

A link's token is issued once, stored as its SHA-256 hash (to look it up) and as an
encrypted copy (so list/fetch can show ``uri`` again, as Census's embedded demo
expects). A revoked or expired link grants nothing (410); what else makes a link
dead (used, target gone) is each kind's own rule."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables import utcnow
from reflow.db.tables_hooks import ManagementLink
from reflow.db.tables_links import ConnectLink
from reflow.db.tables_org import WORKSPACE_ROLES
from reflow.errors import BadRequest, Gone, NotFound
from reflow.services import organization
from reflow.services.auth import Principal

Link = TypeVar("Link", ManagementLink, ConnectLink)


def may_write(session: Session, *, principal: Principal, workspace_id: int) -> bool:
    """Whether the caller may write in the workspace: a workspace API key, or a personal
    token whose user is an editor or owner there. Only they may see a link's token:
    the token itself grants writing, so showing it to a viewer would make it an editor."""
    if principal.kind != "organization":
        return True
    user = organization.acting_user(session, principal=principal)
    role = organization.workspace_role(session, user=user, workspace_id=workspace_id)
    return role is not None and WORKSPACE_ROLES.index(role) >= WORKSPACE_ROLES.index("editor")


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(vault: Vault) -> dict[str, str]:
    """The stored columns of a freshly issued token: its hash and an encrypted copy."""
    token = secrets.token_urlsafe(32)
    encrypted = vault.encrypt({"token": token})
    return {"token_hash": hash_link_token(token), "token_encrypted": encrypted}


def token_of(link: ManagementLink | ConnectLink, vault: Vault) -> str:
    return str(vault.decrypt(link.token_encrypted)["token"])


def expired(link: ManagementLink | ConnectLink, now: dt.datetime | None = None) -> bool:
    expiration = link.expiration
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=dt.UTC)
    return (now or utcnow()) >= expiration


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


@dataclass(frozen=True)
class LinkStore(Generic[Link]):
    """Fetch, list, revoke, resolve and use the links of one table; ``label`` names
    them in errors ("management link", "connect link")."""

    model: type[Link]
    label: str

    def get(self, session: Session, *, workspace_id: int, kind: str, link_id: int) -> Link:
        link = get_scoped(session, self.model, link_id, workspace_id, f"{kind} {self.label}")
        if link.kind != kind:
            raise NotFound(f"{kind} {self.label} {link_id} not found")
        return link

    def list_(self, session: Session, *, workspace_id: int, kind: str, params: PageParams) -> Page:
        model = self.model
        stmt = select(model).where(model.workspace_id == workspace_id, model.kind == kind)
        return paginate(session, stmt, params, model.id)

    def revoke(self, session: Session, *, link: Link) -> Link:
        link.revoked = True
        session.flush()
        return link

    def live(
        self,
        session: Session,
        token: str | None,
        *criteria: ColumnElement[bool],
        now: dt.datetime | None = None,
    ) -> Link:
        """The unrevoked, unexpired link ``token`` names (among those matching
        ``criteria``); 404 when unknown, 410 when revoked or expired."""
        link = None
        if token:
            stmt = select(self.model).where(self.model.token_hash == hash_link_token(token))
            link = session.scalar(stmt.where(*criteria))
        if link is None:
            raise NotFound(f"{self.label} not found")
        if link.revoked:
            raise Gone(f"this {self.label} was revoked")
        if expired(link, now):
            raise Gone(f"this {self.label} has expired")
        return link

    def mark_used(
        self, session: Session, *, link: Link, now: dt.datetime | None = None, **values: Any
    ) -> None:
        """Conditional, so two concurrent uses of one link cannot both succeed."""
        model = self.model
        result = session.execute(
            update(model)
            .where(model.id == link.id, model.used_at.is_(None))
            .values(**values, used_at=now or utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Gone(f"this {self.label} was already used")
        session.refresh(link)
