"""jobs: scheduler state per sync, one run per scheduled slot, enqueue time of a run

Revision ID: 0300_jobs
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0300_jobs"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_schedule_states",
        sa.Column("sync_id", sa.Integer(), nullable=False),
        sa.Column("last_scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sync_id"], ["syncs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sync_id"),
    )
    # When a run was last handed to the broker: the scheduler re-sends queued runs whose
    # message may have been lost (broker restart) once this is old enough.
    op.add_column("sync_runs", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "uq_sync_runs_sync_scheduled",
        "sync_runs",
        ["sync_id", "scheduled_execution_time"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_sync_runs_sync_scheduled", table_name="sync_runs")
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.drop_column("enqueued_at")
    op.drop_table("sync_schedule_states")
