"""managed_objects: slugs and the managing tool of objects a project applied

Config as code (``reflow apply``) names objects by stable slugs, not database ids, and
marks what it created as managed. A side table keeps the Census resource tables as
they are (their wire keys do not change; ``slug``/``managed_by`` are extra keys).

Revision ID: 0930_managed_objects
Revises: 0910_console_passwords
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0930_managed_objects"
down_revision = "0910_console_passwords"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "managed_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "workspace_id",
            sa.Integer(),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("object_created_at", TS, nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("managed_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "kind", "object_id"),
        sa.UniqueConstraint("workspace_id", "kind", "slug"),
        sqlite_autoincrement=True,  # ids are never reused (0900_ids_never_reused)
    )
    op.create_index("ix_managed_objects_workspace_id", "managed_objects", ["workspace_id"])


def downgrade() -> None:
    op.drop_index("ix_managed_objects_workspace_id", table_name="managed_objects")
    op.drop_table("managed_objects")
