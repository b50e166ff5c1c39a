"""ORM tables of the source catalogue: cached tables and columns, filter segments, and
the background refresh jobs whose ``id`` is the Census ``refresh_key``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from reflow.db.tables import Base, JSONType, Timestamped, utcnow


class SourceTable(Base):
    """A table or view of a source, as last listed; ``id`` is the legacy table id."""

    __tablename__ = "source_tables"
    __table_args__ = (
        UniqueConstraint(
            "source_id",
            "table_catalog",
            "table_schema",
            "table_name",
            name="uq_source_tables_locator",
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    table_catalog: Mapped[str] = mapped_column(String(500))
    table_schema: Mapped[str] = mapped_column(String(500))
    table_name: Mapped[str] = mapped_column(String(500))
    #: ``[{name, data_type, can_be_upsert_key}]``; None until first loaded.
    columns: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, default=None)
    columns_refreshed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FilterSegment(Timestamped, Base):
    """A Census filter segment: a molecule tree over a model (dataset) or a table."""

    __tablename__ = "filter_segments"
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("source_models.id", ondelete="CASCADE"), default=None, index=True
    )
    table_id: Mapped[int | None] = mapped_column(
        ForeignKey("source_tables.id", ondelete="CASCADE"), default=None, index=True
    )
    name: Mapped[str] = mapped_column(String(500))
    molecules: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    #: The SQL as compiled when last saved (what the API shows; runs recompile).
    query: Mapped[str] = mapped_column(Text, default="")
    record_count: Mapped[int | None] = mapped_column(default=None)
    #: The refresh job counting the members; None once nothing is pending.
    count_job_id: Mapped[int | None] = mapped_column(default=None)


class RefreshJob(Base):
    """One background refresh. Any API process answers its status from this row."""

    __tablename__ = "refresh_jobs"
    __table_args__ = (Index("ix_refresh_jobs_source_kind", "source_id", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    #: tables | table_columns | model_columns | segment_count
    kind: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[int | None] = mapped_column(default=None)
    #: processing | completed | failed
    status: Mapped[str] = mapped_column(String(20), default="processing")
    message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


__all__ = ["FilterSegment", "RefreshJob", "SourceTable"]
