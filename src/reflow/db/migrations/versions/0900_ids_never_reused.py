"""Ids are never reused: AUTOINCREMENT on SQLite

Without AUTOINCREMENT, SQLite gives a new row ``max(id) + 1``: delete the newest sync and
the next sync gets its id, and so do its runs, so a poller or Terraform state holding
run 13 silently reads another sync's run, and an old export URL serves the new run's data.
``AUTOINCREMENT`` keeps the highest id ever handed out in ``sqlite_sequence``.

SQLite cannot add AUTOINCREMENT to an existing table, so each table is recreated by
SQLite's documented procedure: created anew from its own DDL with the key made
``AUTOINCREMENT`` (columns, unique and foreign-key constraints with ``ON DELETE`` kept
verbatim), rows copied, the old table dropped, the new one renamed into place, its
indexes created again. DDL of another shape falls back to Alembic's batch mode
(``recreate="always"``), which reflects the table and does the same. The copy seeds
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

import re

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
        if not _recreate_with_autoincrement(table):
            _recreate(table, autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _recreate(table, autoincrement=False)


_ID_COLUMN = re.compile(r"^(\s*id INTEGER NOT NULL),", re.M)
_ID_KEY = re.compile(r",\s*PRIMARY KEY \(id\)")
_HEADER = re.compile(r'^CREATE TABLE\s+("?)(\w+)\1\s*\(')


def _recreate_with_autoincrement(table: str) -> bool:
    """SQLite's table-recreation procedure in plain SQL: the table's own DDL with the
    key made ``AUTOINCREMENT``, the rows copied, the old table dropped, the new one
    renamed, its indexes created again. Batch mode does the same through reflection, at
    ~70 ms a table, which every fresh store (and test) would pay; it remains the
    fallback for DDL not shaped as this project's migrations write it."""
    bind = op.get_bind()
    ddl = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    shaped = len(_ID_COLUMN.findall(ddl)) == 1 and len(_ID_KEY.findall(ddl)) == 1
    if not shaped or not _HEADER.match(ddl):
        return False
    temporary = f"_reflow_0900_{table}"
    new = _ID_KEY.sub("", _ID_COLUMN.sub(r"\1 PRIMARY KEY AUTOINCREMENT,", ddl))
    new = _HEADER.sub(f'CREATE TABLE "{temporary}" (', new, count=1)
    indexes = [row[0] for row in bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,),
    )]
    bind.exec_driver_sql(new)
    bind.exec_driver_sql(f'INSERT INTO "{temporary}" SELECT * FROM "{table}"')
    bind.exec_driver_sql(f'DROP TABLE "{table}"')
    bind.exec_driver_sql(f'ALTER TABLE "{temporary}" RENAME TO "{table}"')
    for index in indexes:
        bind.exec_driver_sql(index)
    return True


def _recreate(table: str, *, autoincrement: bool) -> None:
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
