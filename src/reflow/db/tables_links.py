"""ORM tables of connect links (Census Embedded), topics of HTTP-request sources
with their received messages, and dbt projects attached to a source (migration
0700_links)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from reflow.db.tables import Base, JSONType, Timestamped, utcnow


class ConnectLink(Timestamped, Base):
    """A source or destination connect link. The token is looked up by its SHA-256
    hash; an encrypted copy lets list/fetch show ``uri`` again."""

    __tablename__ = "connect_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # "source" | "destination"
    type: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_encrypted: Mapped[str] = mapped_column(Text)
    expiration: Mapped[dt.datetime] = mapped_column()
    revoked: Mapped[bool] = mapped_column(default=False)
    redirect_uri: Mapped[str | None] = mapped_column(String(2000), default=None)
    #: The source/destination created or re-authorized through the link.
    connection_id: Mapped[int | None] = mapped_column(default=None)
    #: True for links made by ``POST /sources|destinations/{id}/connect_links``.
    reauthorize: Mapped[bool] = mapped_column(default=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Topic(Timestamped, Base):
    """A message schema of an ``http_request`` source; messages arrive at
    ``POST /ingest/{source_id}/{topic}`` authenticated by the topic's secret."""

    __tablename__ = "topics"
    __table_args__ = (UniqueConstraint("source_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    sample_message: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: Field name -> Census type (string, number, boolean, object, array).
    message_schema: Mapped[dict[str, Any]] = mapped_column(JSONType)
    secret_hash: Mapped[str] = mapped_column(String(64))


class TopicMessage(Base):
    __tablename__ = "topic_messages"
    __table_args__ = (Index("ix_topic_messages_topic_id_id", "topic_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Project(Timestamped, Base):
    """A dbt project on the Reflow host whose ``target/manifest.json`` lists models."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(20), default="dbt")
    path: Mapped[str] = mapped_column(Text)
    latest_upgrade_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_upgrade_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_upgrade_attempt_error: Mapped[bool] = mapped_column(default=False)
    last_upgrade_attempt_output: Mapped[str | None] = mapped_column(Text, default=None)


class ProjectRefresh(Base):
    """One refresh of a project; its id is the ``refresh_key``."""

    __tablename__ = "project_refreshes"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20))  # completed | failed
    output: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProjectModel(Base):
    """A dbt model of a project, materialised as a Census model (``source_models``)."""

    __tablename__ = "project_models"
    __table_args__ = (UniqueConstraint("project_id", "unique_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[int] = mapped_column(
        ForeignKey("source_models.id", ondelete="CASCADE"), unique=True
    )
    #: dbt's node id, e.g. ``model.shop.customers``.
    unique_id: Mapped[str] = mapped_column(String(1000))
    compiled_query: Mapped[str | None] = mapped_column(Text, default=None)


__all__ = ["ConnectLink", "Project", "ProjectModel", "ProjectRefresh", "Topic", "TopicMessage"]
