"""Source and destination connect links (Census Embedded): a short-lived URL that
lets someone without an API token enter credentials for a new source/destination of
the workspace, or re-authorize an existing one.

The token is looked up by its SHA-256 hash; an encrypted copy lets list/fetch show
``uri`` again (Census's embedded demo reuses links it lists). A link is used once: a
revoked, expired or used link grants nothing (410). Credentials entered through the
page go through the same create/update path as the API (encrypted, tested, never
shown again); when the connection test fails nothing is saved and the page shows why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from sqlalchemy.orm import Session

from reflow.connectors import registry
from reflow.crypto import Vault
from reflow.db.tables import Destination, Source, utcnow
from reflow.db.tables_links import ConnectLink
from reflow.errors import BadRequest, Gone, NotFound
from reflow.runtime import Runtime
from reflow.services import destination_types, destinations, sources
from reflow.services.link_tokens import LinkStore, new_token, redirect_uri

Kind = Literal["source", "destination"]
PAGE_PATH = "/connect"

_store = LinkStore(ConnectLink, "connect link")
get = _store.get
list_ = _store.list_
revoke = _store.revoke


def catalogue(session: Session, *, kind: Kind, workspace_id: int, vault: Vault) -> dict[str, type]:
    if kind == "source":
        return dict(registry.source_types())
    return destination_types.catalogue(session, workspace_id=workspace_id, vault=vault)


def create(
    session: Session,
    *,
    workspace_id: int,
    vault: Vault,
    kind: Kind,
    body: dict[str, Any],
    ttl_seconds: int,
    connection: Source | Destination | None = None,
    now: dt.datetime | None = None,
) -> ConnectLink:
    """A link for a new connection of ``body["type"]``, or, given ``connection``, one
    that re-authorizes it."""
    uri = redirect_uri(body)
    if connection is None:
        type_ = body.get("type")
        types = catalogue(session, kind=kind, workspace_id=workspace_id, vault=vault)
        if not isinstance(type_, str) or not type_:
            raise BadRequest("type is required and must be a string")
        if type_ not in types:
            raise BadRequest(
                f"type {type_!r} is not a known {kind} type; valid types: "
                + ", ".join(sorted(types))
            )
    else:
        type_ = connection.type
    now = now or utcnow()
    link = ConnectLink(
        created_at=now,
        updated_at=now,
        workspace_id=workspace_id,
        kind=kind,
        type=type_,
        **new_token(vault),
        expiration=now + dt.timedelta(seconds=ttl_seconds),
        redirect_uri=uri,
        connection_id=connection.id if connection is not None else None,
        reauthorize=connection is not None,
    )
    session.add(link)
    session.flush()
    return link


def resolve(session: Session, *, token: str | None, now: dt.datetime | None = None) -> ConnectLink:
    """The live link ``token`` names; 404 when unknown, 410 when it grants nothing."""
    link = _store.live(session, token, now=now)
    if link.used_at is not None:
        raise Gone(f"this connect link was already used for {link.kind} {link.connection_id}")
    if link.reauthorize and existing(session, link) is None:
        raise Gone(f"the {link.kind} this link re-authorizes no longer exists")
    return link


def existing(session: Session, link: ConnectLink) -> Source | Destination | None:
    """The connection a re-authorize link updates (None if deleted)."""
    try:
        if link.kind == "source":
            return sources.get(
                session, workspace_id=link.workspace_id, source_id=link.connection_id or 0
            )
        return destinations.get(
            session, workspace_id=link.workspace_id, destination_id=link.connection_id or 0
        )
    except NotFound:
        return None


def connector_class(session: Session, *, link: ConnectLink, vault: Vault) -> type | None:
    types = catalogue(session, kind=link.kind, workspace_id=link.workspace_id, vault=vault)  # type: ignore[arg-type]
    return types.get(link.type)


def submit(
    session: Session,
    *,
    link: ConnectLink,
    runtime: Runtime,
    credentials: dict[str, Any],
    name: str | None,
) -> Source | Destination:
    """Creates (or re-authorizes) the link's connection with the usual connection
    test. Returns it with ``last_test_succeeded``; the caller commits only when the
    test passed, so a failed attempt leaves nothing behind and the link usable."""
    service: Any = sources if link.kind == "source" else destinations
    if link.reauthorize:
        current = existing(session, link)
        assert current is not None  # resolve() checked it exists
        changes = {"credentials": credentials, **({"name": name} if name else {})}
        # sources.update(source=...) / destinations.update(destination=...)
        connection = service.update(
            session, **{link.kind: current}, vault=runtime.vault, changes=changes
        )
    else:
        connection = service.create(
            session,
            workspace_id=link.workspace_id,
            vault=runtime.vault,
            type=link.type,
            credentials=credentials,
            name=name or None,
        )
    if isinstance(connection, Destination):
        from reflow.services import destination_objects

        destination_objects.refresh_after_change(session, runtime=runtime, destination=connection)
    return connection


def mark_used(
    session: Session, *, link: ConnectLink, connection_id: int, now: dt.datetime | None = None
) -> None:
    _store.mark_used(session, link=link, now=now, connection_id=connection_id)
