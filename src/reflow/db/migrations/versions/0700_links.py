"""links: source/destination connect links, topics with their messages, dbt projects

Revision ID: 0700_links
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0700_links"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    ]


def _workspace_and_source() -> list[sa.Column]:
    return [
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column(
            "source_id",
            sa.Integer(),
            sa.ForeignKey("sources.id", ondelete="CASCADE"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "connect_links",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("token_encrypted", sa.Text(), nullable=False),
        sa.Column("expiration", TS, nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=True),
        sa.Column("connection_id", sa.Integer(), nullable=True),
        sa.Column("reauthorize", sa.Boolean(), nullable=False),
        sa.Column("used_at", TS, nullable=True),
        *_stamps(),
    )
    op.create_index("ix_connect_links_workspace_id", "connect_links", ["workspace_id"])
    op.create_table(
        "topics",
        sa.Column("id", sa.Integer(), primary_key=True),
        *_workspace_and_source(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("sample_message", JSON, nullable=False),
        sa.Column("message_schema", JSON, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("source_id", "name"),
    )
    op.create_index("ix_topics_workspace_id", "topics", ["workspace_id"])
    op.create_index("ix_topics_source_id", "topics", ["source_id"])
    op.create_table(
        "topic_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "topic_id",
            sa.Integer(),
            sa.ForeignKey("topics.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index("ix_topic_messages_topic_id_id", "topic_messages", ["topic_id", "id"])
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True),
        *_workspace_and_source(),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("latest_upgrade_at", TS, nullable=True),
        sa.Column("last_upgrade_attempt_at", TS, nullable=True),
        sa.Column("last_upgrade_attempt_error", sa.Boolean(), nullable=False),
        sa.Column("last_upgrade_attempt_output", sa.Text(), nullable=True),
        *_stamps(),
    )
    op.create_index("ix_projects_workspace_id", "projects", ["workspace_id"])
    op.create_index("ix_projects_source_id", "projects", ["source_id"])
    op.create_table(
        "project_refreshes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "project_id",
            sa.Integer(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_project_refreshes_project_id", "project_refreshes", ["project_id"])
    op.create_table(
        "project_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "project_id",
            sa.Integer(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "model_id",
            sa.Integer(),
            sa.ForeignKey("source_models.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("unique_id", sa.String(1000), nullable=False),
        sa.Column("compiled_query", sa.Text(), nullable=True),
        sa.UniqueConstraint("project_id", "unique_id"),
    )
    op.create_index("ix_project_models_project_id", "project_models", ["project_id"])


def downgrade() -> None:
    for table in (
        "project_models",
        "project_refreshes",
        "projects",
        "topic_messages",
        "topics",
        "connect_links",
    ):
        op.drop_table(table)
