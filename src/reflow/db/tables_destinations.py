"""ORM tables of the destinations area: custom destination types, the cached object
list of each destination, and the background jobs that refresh it or create objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from reflow.db.tables import Base, JSONType, Timestamped, utcnow


class CustomDestinationType(Timestamped, Base):
    """A destination type registered with ``POST /connectors``, private to its workspace.

    ``data_encrypted`` holds ``{"url", "headers"}``: the URL may carry a secret in its
    query string and headers may hold literal tokens, so both are encrypted at rest."""

    __tablename__ = "custom_destination_types"
    __table_args__ = (UniqueConstraint("workspace_id", "service_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    service_name: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(200))
    icon_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    configuration_definition: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    data_encrypted: Mapped[str] = mapped_column(Text)


class CachedDestinationObject(Base):
    """One destination object as the last refresh saw it (fields included)."""

    __tablename__ = "destination_object_cache"
    __table_args__ = (UniqueConstraint("destination_id", "full_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), index=True
    )
    full_name: Mapped[str] = mapped_column(String(1000))
    position: Mapped[int] = mapped_column(default=0)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    refreshed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DestinationJob(Base):
    """A background job on a destination: ``refresh_objects``, ``refresh_fields`` of one
    object, or ``create_object``. Its id is the ``refresh_key`` clients poll with."""

    __tablename__ = "destination_jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(30))
    object_full_name: Mapped[str | None] = mapped_column(String(1000), default=None)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    #: ``processing``, ``completed`` or ``failed``.
    status: Mapped[str] = mapped_column(String(20), default="processing")
    message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
