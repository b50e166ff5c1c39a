"""ORM tables for what happens around runs: workspace webhooks and their durable
outbox, alert instances, and embedded management links."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from reflow.db.tables import Base, JSONType, Timestamped, utcnow


class Webhook(Timestamped, Base):
    """A workspace sync-lifecycle webhook. The signing secret is vault-encrypted."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    endpoint: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONType)
    secret_encrypted: Mapped[str] = mapped_column(Text)


class WebhookEvent(Base):
    """One lifecycle event, recorded once (``dedupe_key`` is unique) with the exact
    body that is signed and sent to every subscribed webhook."""

    __tablename__ = "webhook_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    event: Mapped[str] = mapped_column(String(50))
    sync_id: Mapped[int | None] = mapped_column(default=None)
    sync_run_id: Mapped[int | None] = mapped_column(default=None, index=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one row per (event, webhook), delivered by the deliverer thread."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    response_status: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AlertInstance(Base):
    """One firing of a sync's alert configuration, recorded on the run that raised it."""

    __tablename__ = "alert_instances"
    __table_args__ = (Index("ix_alert_instances_open", "sync_id", "alert_id", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    sync_id: Mapped[int] = mapped_column(ForeignKey("syncs.id", ondelete="CASCADE"))
    sync_run_id: Mapped[int] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="CASCADE"), index=True
    )
    #: The ``id`` of the item in the sync's ``alert_attributes``.
    alert_id: Mapped[int] = mapped_column()
    alert_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="raised")  # raised | resolved
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="")
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolved_by_run_id: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ManagementLink(Timestamped, Base):
    """A sync or segment management link: a scoped, expiring capability.

    The token is matched by its hash; an encrypted copy lets list/fetch show ``uri``
    again, as Census does (its embedded demo reuses links from the list)."""

    __tablename__ = "management_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # sync | segment
    purpose: Mapped[str] = mapped_column(String(20))  # create | edit
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_encrypted: Mapped[str] = mapped_column(Text)
    expiration: Mapped[dt.datetime] = mapped_column()
    revoked: Mapped[bool] = mapped_column(default=False)
    redirect_uri: Mapped[str | None] = mapped_column(Text, default=None)
    #: Plain ids, no foreign keys: a link outlives what it pointed at and then grants nothing.
    sync_id: Mapped[int | None] = mapped_column(default=None)
    segment_id: Mapped[int | None] = mapped_column(default=None)
    source_id: Mapped[int | None] = mapped_column(default=None)
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


__all__ = ["AlertInstance", "ManagementLink", "Webhook", "WebhookDelivery", "WebhookEvent"]
