"""Destinations: connections that synced records are written into."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from reflow.connectors.base import DestinationConnector, DestinationObject
from reflow.connectors.errors import ConnectorError, ObjectNotFound
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped
from reflow.db.tables import Destination
from reflow.errors import BadRequest, NotFound
from reflow.services import connections, destination_types


def create(
    session: Session,
    *,
    workspace_id: int,
    vault: Vault,
    type: Any,
    credentials: dict[str, Any] | None,
    name: str | None = None,
) -> Destination:
    cls = connections.connector_class(
        destination_types.catalogue(session, workspace_id=workspace_id, vault=vault),
        type,
        "service_connection.type",
    )
    credentials = connections.require_credentials(credentials, "service_connection")
    destination = Destination(
        workspace_id=workspace_id, type=cls.service_name, name=name or cls.label
    )
    connections.save_credentials(
        destination, cls=cls, credentials=credentials, vault=vault, merge=False
    )
    session.add(destination)
    session.flush()
    return destination


def update(
    session: Session, *, destination: Destination, vault: Vault, changes: dict[str, Any]
) -> Destination:
    connections.reject_type_change(
        destination, changes, "service_connection.type cannot be changed; create a new destination"
    )
    if changes.get("name"):
        destination.name = changes["name"]
    cls = connector_class(destination, vault=vault)
    connections.save_credentials(
        destination, cls=cls, credentials=changes.get("credentials") or {}, vault=vault, merge=True
    )
    session.flush()
    return destination


def get(session: Session, *, workspace_id: int, destination_id: int) -> Destination:
    return get_scoped(session, Destination, destination_id, workspace_id, "destination")


def list_(session: Session, *, workspace_id: int, params: PageParams) -> Page:
    return connections.list_in_workspace(
        session, Destination, workspace_id=workspace_id, params=params
    )


def delete(session: Session, *, destination: Destination) -> None:
    connections.ensure_unused(session, destination, advice="delete those first")
    session.delete(destination)
    session.flush()


def connector_class(destination: Destination, *, vault: Vault) -> type[DestinationConnector]:
    """The destination's connector class: a built-in or one of its workspace's custom
    types (``POST /connectors``)."""
    cls = destination_types.class_for(destination, vault=vault)
    if cls is None:
        raise BadRequest(
            f"destination {destination.id}: type {destination.type!r} no longer exists"
        )
    return cls


def connector(destination: Destination, *, vault: Vault) -> Any:
    cls = connector_class(destination, vault=vault)
    return connections.build_connector(destination, catalogue={destination.type: cls}, vault=vault)


def list_objects(destination: Destination, *, vault: Vault) -> list[DestinationObject]:
    return _with_connector(destination, vault, lambda c: c.list_objects())


def get_object(destination: Destination, *, vault: Vault, full_name: str) -> DestinationObject:
    try:
        return _with_connector(destination, vault, lambda c: c.get_object(full_name))
    except ObjectNotFound as exc:
        raise NotFound(str(exc)) from exc


def _with_connector(destination: Destination, vault: Vault, fn: Any) -> Any:
    try:
        conn = connector(destination, vault=vault)
    except Exception as exc:
        raise BadRequest(f"destination {destination.id} credentials are invalid: {exc}") from exc
    try:
        return fn(conn)
    except ObjectNotFound:
        raise
    except ConnectorError as exc:
        raise BadRequest(f"destination {destination.id}: {exc}") from exc
    finally:
        conn.close()
