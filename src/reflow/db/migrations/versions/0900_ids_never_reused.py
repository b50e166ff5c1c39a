"""Ids are never reused: AUTOINCREMENT on SQLite

Without AUTOINCREMENT, SQLite gives a new row ``max(id) + 1``: delete the newest sync and
the next sync gets its id, and so do its runs, so a poller or Terraform state holding
run 13 silently reads another sync's run, and an old export URL serves the new run's data.
``AUTOINCREMENT`` keeps the highest id ever handed out in ``sqlite_sequence``.

SQLite cannot add AUTOINCREMENT to an existing table, so each table is recreated (batch
mode, ``recreate="always"``): reflected with its columns, indexes, unique and foreign-key
constraints (``ON DELETE`` included), copied, and renamed into place. The copy seeds
``sqlite_sequence`` with the highest id still present; an id deleted from the very top of
a table before this upgrade left no trace anywhere and cannot be protected.
``reflow.db.migrate.upgrade`` turns foreign-key enforcement off around the upgrade (as
SQLite's documented table-recreation procedure requires: dropping the old table would
otherwise cascade into the tables referencing it) and checks the keys before committing.

PostgreSQL is untouched: its ``SERIAL`` ids come from sequences, which never go back.

Revision ID: 0900_ids_never_reused
Revises: 0800_installation
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0900_ids_never_reused"
down_revision = "0800_installation"
branch_labels = None
depends_on = None

#: Every table with a single integer ``id`` primary key, parents before children.
TABLES = (
    "organizations", "invitations", "users", "workspaces", "api_tokens", "connect_links",
    "custom_destination_types", "destinations", "management_links", "sources",
    "webhook_events", "webhooks", "workspace_invitations", "workspace_members",
    "destination_jobs", "destination_object_cache", "projects", "refresh_jobs",
    "source_models", "source_tables", "syncs", "topics", "webhook_deliveries",
    "filter_segments", "project_models", "project_refreshes", "sync_runs", "topic_messages",
    "alert_instances", "sync_run_records",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _recreate(table, autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _recreate(table, autoincrement=False)


def _recreate(table: str, *, autoincrement: bool) -> None:
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
