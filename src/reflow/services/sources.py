"""Sources: connections to warehouses that models and tables are read from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from reflow.connectors import registry
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped
from reflow.db.tables import Source, SourceModel
from reflow.errors import BadRequest
from reflow.services import connections


def create(
    session: Session,
    *,
    workspace_id: int,
    vault: Vault,
    type: Any,
    credentials: dict[str, Any] | None,
    name: str | None = None,
    label: str | None = None,
    sync_engine: str | None = None,
    read_only_connection: bool | None = None,
    warehouse_writeback_retention_in_days: int | None = None,
) -> Source:
    cls = connections.connector_class(registry.source_types(), type, "connection.type")
    credentials = connections.require_credentials(credentials, "connection")
    if sync_engine not in (None, "basic", "advanced"):
        raise BadRequest("connection.sync_engine must be 'basic' or 'advanced'")
    source = Source(
        workspace_id=workspace_id,
        type=cls.service_name,
        name="",
        label=label,
        sync_engine=sync_engine
        or ("advanced" if cls.capabilities.supports_bookkeeping else "basic"),
        read_only_connection=bool(read_only_connection),
        warehouse_writeback_retention_in_days=_retention_days(
            warehouse_writeback_retention_in_days
        ),
    )
    config = connections.save_credentials(
        source, cls=cls, credentials=credentials, vault=vault, merge=False
    )
    source.name = name or label or connections.default_name(cls, config, credentials)
    session.add(source)
    session.flush()
    return source


def _retention_days(days: Any) -> int | None:
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
        raise BadRequest("connection.warehouse_writeback_retention_in_days must be an integer")
    return days


def update(
    session: Session,
    *,
    source: Source,
    vault: Vault,
    changes: dict[str, Any],
) -> Source:
    connections.reject_type_change(
        source, changes, "connection.type cannot be changed; create a new source instead"
    )
    if "sync_engine" in changes and changes["sync_engine"] not in (None, source.sync_engine):
        raise BadRequest("connection.sync_engine can only be set when the source is created")
    if changes.get("name"):
        source.name = changes["name"]
    if "label" in changes:
        source.label = changes["label"]
        if not changes.get("name") and changes["label"]:
            source.name = changes["label"]
    if "read_only_connection" in changes:
        value = changes["read_only_connection"]
        if not isinstance(value, bool):  # stored as NOT NULL boolean
            raise BadRequest("connection.read_only_connection must be a boolean")
        source.read_only_connection = value
    if "warehouse_writeback_retention_in_days" in changes:
        days = _retention_days(changes["warehouse_writeback_retention_in_days"])
        source.warehouse_writeback_retention_in_days = days
    cls = registry.source_types()[source.type]
    connections.save_credentials(
        source, cls=cls, credentials=changes.get("credentials") or {}, vault=vault, merge=True
    )
    session.flush()
    return source


def get(session: Session, *, workspace_id: int, source_id: int) -> Source:
    return get_scoped(session, Source, source_id, workspace_id, "source")


def list_(session: Session, *, workspace_id: int, params: PageParams) -> Page:
    return connections.list_in_workspace(session, Source, workspace_id=workspace_id, params=params)


def delete(session: Session, *, source: Source) -> None:
    connections.ensure_unused(session, source, advice="delete those syncs first")
    session.execute(sql_delete(SourceModel).where(SourceModel.source_id == source.id))
    session.delete(source)
    session.flush()


def connector(source: Source, *, vault: Vault) -> Any:
    catalogue = {source.type: registry.source_type(source.type)}
    return connections.build_connector(source, catalogue=catalogue, vault=vault)
