"""Merge the per-area branches; add the installation id

The areas of the first release (organization, webhooks, jobs, sources, destinations,
links) each branched from the initial schema so they could be written side by side;
this revision joins them into one line again, so later migrations have a single parent.

It also adds ``installation``: one row with a random id that namespaces Reflow's
bookkeeping tables inside a warehouse, so two installations (say, staging and
production) that read the same warehouse never share a snapshot.

Revision ID: 0800_installation
Revises: 0100_org, 0200_hooks, 0300_jobs, 0500_sources, 0600_destinations, 0700_links
Create Date: 2026-11-28
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0800_installation"
down_revision = (
    "0100_org",
    "0200_hooks",
    "0300_jobs",
    "0500_sources",
    "0600_destinations",
    "0700_links",
)
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(
        table,
        [
            {
                "id": 1,
                "installation_id": uuid.uuid4().hex[:12],
                "created_at": dt.datetime.now(dt.UTC),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("installation")
