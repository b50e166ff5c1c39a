"""sync_runs: an index on (sync_id, id)

A sync's last run that ran (``max(id)`` of its runs not skipped) is read by every
GET /syncs and GET /syncs/{id}, and a sync's runs are listed newest first. Without
this index PostgreSQL answered the first with a backward scan of the primary key
through every later run of every sync (~300 ms for a page of 25 syncs over 200,000
runs; a poller's request), and sorted all of a sync's runs for the second.

Revision ID: 0940_sync_runs_by_sync
Revises: 0930_managed_objects
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0940_sync_runs_by_sync"
down_revision = "0930_managed_objects"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sync_runs_sync_id_id", "sync_runs", ["sync_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_sync_id_id", table_name="sync_runs")
