"""destinations: custom destination types, cached destination objects, destination jobs

Revision ID: 0600_destinations
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0600_destinations"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "custom_destination_types",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("service_name", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("icon_url", sa.String(2000), nullable=True),
        sa.Column("configuration_definition", JSON, nullable=False),
        sa.Column("data_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("workspace_id", "service_name"),
    )
    op.create_index(
        "ix_custom_destination_types_workspace_id", "custom_destination_types", ["workspace_id"]
    )
    op.create_table(
        "destination_object_cache",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "destination_id",
            sa.Integer(),
            sa.ForeignKey("destinations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("full_name", sa.String(1000), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("refreshed_at", TS, nullable=False),
        sa.UniqueConstraint("destination_id", "full_name"),
    )
    op.create_index(
        "ix_destination_object_cache_destination_id",
        "destination_object_cache",
        ["destination_id"],
    )
    op.create_table(
        "destination_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column(
            "destination_id",
            sa.Integer(),
            sa.ForeignKey("destinations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("object_full_name", sa.String(1000), nullable=True),
        sa.Column("request", JSON, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
    )
    op.create_index("ix_destination_jobs_workspace_id", "destination_jobs", ["workspace_id"])
    op.create_index("ix_destination_jobs_destination_id", "destination_jobs", ["destination_id"])


def downgrade() -> None:
    op.drop_table("destination_jobs")
    op.drop_table("destination_object_cache")
    op.drop_table("custom_destination_types")
