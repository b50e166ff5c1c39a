"""Console passwords for organization users

An invited user sets a password when their invitation is accepted, and signs in to the
web console with their email and that password. Only an scrypt hash is stored
(``scrypt$N$r$p$salt$digest``, see services/passwords.py); a user without one (every
user created before this revision, the initial owner) signs in with an API token.

Revision ID: 0910_console_passwords
Revises: 0900_ids_never_reused
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0910_console_passwords"
down_revision = "0900_ids_never_reused"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_hash")
