"""ORM tables. Census calls SQL datasets "models"; to keep that word for the API
resource, this module calls ORM classes tables, and the model resource's table is
``SourceModel``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from reflow.timestamps import utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: DateTime(timezone=True), dict[str, Any]: JSONType}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        table = cls.__dict__.get("__table__")
        if table is not None and [c.name for c in table.primary_key.columns] == ["id"]:
            # Ids are public (pollers, Terraform state, export URLs hold them): SQLite must
            # never hand a deleted row's id to a new one, as it does without AUTOINCREMENT.
            # PostgreSQL's sequences never go back. Migration 0900 converts old stores.
            table.dialect_kwargs["sqlite_autoincrement"] = True


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Installation(Base):
    """One row: what tells this Reflow installation apart from others sharing a
    warehouse (it namespaces the in-warehouse bookkeeping tables)."""

    __tablename__ = "installation"
    id: Mapped[int] = mapped_column(primary_key=True)
    installation_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Organization(Timestamped, Base):
    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Workspace(Timestamped, Base):
    __tablename__ = "workspaces"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))


class ApiToken(Timestamped, Base):
    """A workspace API key or an organization (personal access) token, stored hashed."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "workspace" | "organization"
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspaces.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The user whose personal access token this is (users lives in db/tables_org.py;
    #: the foreign key is declared in migration 0100_org). None for workspace API keys.
    user_id: Mapped[int | None] = mapped_column(default=None, index=True)


class Connection:
    """Columns sources and destinations share."""

    name: Mapped[str] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(100))
    credentials_encrypted: Mapped[str] = mapped_column(Text)
    connection_details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_test_results: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    last_test_succeeded: Mapped[bool | None] = mapped_column(default=None)
    last_tested_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Source(Connection, Timestamped, Base):
    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(500), default=None)
    sync_engine: Mapped[str] = mapped_column(String(20), default="advanced")
    read_only_connection: Mapped[bool] = mapped_column(default=False)
    warehouse_writeback_retention_in_days: Mapped[int | None] = mapped_column(default=None)


class SourceModel(Timestamped, Base):
    """The Census "model": a named SQL query over a source."""

    __tablename__ = "source_models"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    query: Mapped[str] = mapped_column(Text)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


class Destination(Connection, Timestamped, Base):
    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)


class Sync(Timestamped, Base):
    __tablename__ = "syncs"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(500), default=None)
    operation: Mapped[str] = mapped_column(String(20))
    paused: Mapped[bool] = mapped_column(default=False)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    #: The source object as given (type + id/name/table locator), normalised.
    source_object: Mapped[dict[str, Any]] = mapped_column()
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id"), index=True)
    destination_object: Mapped[str] = mapped_column(String(500))
    mappings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    #: Schedule/trigger spec in its ``mode`` form.
    mode: Mapped[dict[str, Any]] = mapped_column(default=dict)
    alert_attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    #: The remaining Census configuration fields (field_behavior, advanced_configuration, ...).
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SyncRun(Timestamped, Base):
    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_sync_status", "sync_id", "status"),
                      # A sync's runs newest first, and its last run (services/listing.py).
                      Index("ix_sync_runs_sync_id_id", "sync_id", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    sync_id: Mapped[int] = mapped_column(ForeignKey("syncs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    full_sync: Mapped[bool] = mapped_column(default=False)
    force_full_sync: Mapped[bool] = mapped_column(default=False)
    canceled: Mapped[bool] = mapped_column(default=False)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    source_record_count: Mapped[int | None] = mapped_column(default=None)
    source_record_updates: Mapped[int | None] = mapped_column(default=None)
    source_record_deletes: Mapped[int | None] = mapped_column(default=None)
    source_record_invalids: Mapped[int | None] = mapped_column(default=None)
    records_processed: Mapped[int | None] = mapped_column(default=None)
    records_updated: Mapped[int | None] = mapped_column(default=None)
    records_failed: Mapped[int | None] = mapped_column(default=None)
    error_code: Mapped[str | None] = mapped_column(String(100), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    current_step: Mapped[str | None] = mapped_column(String(200), default=None)
    scheduled_execution_time: Mapped[dt.datetime | None] = mapped_column(default=None)
    sync_trigger_reason: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    completed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    #: When the run was last handed to the broker (jobs area, migration 0300_jobs).
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class SyncRunRecord(Base):
    """A record of a run that did not arrive: invalid (never sent) or rejected."""

    __tablename__ = "sync_run_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"), index=True)
    identifier: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(20))  # invalid | rejected
    operation: Mapped[str] = mapped_column(String(20), default="upsert")
    status_message: Mapped[str] = mapped_column(Text, default="")
    record_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


__all__ = [
    "ApiToken",
    "Base",
    "Destination",
    "Installation",
    "Organization",
    "Source",
    "SourceModel",
    "Sync",
    "SyncRun",
    "SyncRunRecord",
    "Workspace",
]
