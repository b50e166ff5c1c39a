"""sources: cached tables and columns, filter segments, background refresh jobs

Revision ID: 0500_sources
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0500_sources"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "source_tables",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("table_catalog", sa.String(length=500), nullable=False),
        sa.Column("table_schema", sa.String(length=500), nullable=False),
        sa.Column("table_name", sa.String(length=500), nullable=False),
        sa.Column("columns", JSON, nullable=True),
        sa.Column("columns_refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "source_id",
            "table_catalog",
            "table_schema",
            "table_name",
            name="uq_source_tables_locator",
        ),
    )
    op.create_index("ix_source_tables_workspace_id", "source_tables", ["workspace_id"])
    op.create_table(
        "filter_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("table_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("molecules", JSON, nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=True),
        sa.Column("count_job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_id"], ["source_models.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["table_id"], ["source_tables.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("workspace_id", "source_id", "model_id", "table_id"):
        op.create_index(f"ix_filter_segments_{column}", "filter_segments", [column])
    op.create_table(
        "refresh_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_refresh_jobs_workspace_id", "refresh_jobs", ["workspace_id"])
    op.create_index("ix_refresh_jobs_source_kind", "refresh_jobs", ["source_id", "kind"])


def downgrade() -> None:
    op.drop_table("refresh_jobs")
    op.drop_table("filter_segments")
    op.drop_table("source_tables")
