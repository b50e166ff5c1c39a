"""organization: users, workspace members, invitations, workspace profiles and
retrievable API keys; api_tokens.user_id ties a personal access token to its user

Revision ID: 0100_org
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0100_org"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

#: The owner every existing organization gets; its organization tokens become the
#: owner's personal access tokens (what ``reflow init`` does for new stores).
INITIAL_OWNER = "admin@localhost"


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "organization_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("organization_id", "email", name="uq_users_org_email"),
    )
    op.create_index("ix_users_organization_id", "users", ["organization_id"])
    op.create_table(
        "workspace_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("workspace_id", "user_id", name="uq_workspace_members_user"),
    )
    op.create_index("ix_workspace_members_workspace_id", "workspace_members", ["workspace_id"])
    op.create_index("ix_workspace_members_user_id", "workspace_members", ["user_id"])
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "organization_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by_id", sa.Integer(), nullable=True),
        *_timestamps(),
    )
    op.create_index("ix_invitations_organization_id", "invitations", ["organization_id"])
    op.create_table(
        "workspace_invitations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "invitation_id",
            sa.Integer(),
            sa.ForeignKey("invitations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        *_timestamps(),
    )
    op.create_index(
        "ix_workspace_invitations_invitation_id", "workspace_invitations", ["invitation_id"]
    )
    op.create_index(
        "ix_workspace_invitations_workspace_id", "workspace_invitations", ["workspace_id"]
    )
    op.create_table(
        "workspace_profiles",
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), primary_key=True),
        sa.Column("notification_emails", sa.JSON(), nullable=False),
    )
    op.create_table(
        "workspace_key_copies",
        sa.Column(
            "token_id",
            sa.Integer(),
            sa.ForeignKey("api_tokens.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("key_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_workspace_key_copies_workspace_id", "workspace_key_copies", ["workspace_id"]
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.create_index("ix_api_tokens_user_id", ["user_id"])
        batch.create_foreign_key("fk_api_tokens_user_id", "users", ["user_id"], ["id"])
    _adopt_existing_organization_tokens()


def _adopt_existing_organization_tokens() -> None:
    """Stores initialized before users existed: each organization gets its initial
    owner, and its organization tokens become that owner's personal access tokens."""
    bind = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    organizations = bind.execute(sa.text("SELECT id FROM organizations")).scalars().all()
    for org_id in organizations:
        bind.execute(
            sa.text(
                "INSERT INTO users (organization_id, email, role, created_at, updated_at)"
                " VALUES (:org, :email, 'admin', :now, :now)"
            ),
            {"org": org_id, "email": INITIAL_OWNER, "now": now},
        )
        user_id = bind.execute(
            sa.text("SELECT id FROM users WHERE organization_id = :org AND email = :email"),
            {"org": org_id, "email": INITIAL_OWNER},
        ).scalar_one()
        bind.execute(
            sa.text(
                "UPDATE api_tokens SET user_id = :user WHERE organization_id = :org"
                " AND kind = 'organization' AND user_id IS NULL"
            ),
            {"user": user_id, "org": org_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("fk_api_tokens_user_id", type_="foreignkey")
        batch.drop_index("ix_api_tokens_user_id")
        batch.drop_column("user_id")
    for table in (
        "workspace_key_copies",
        "workspace_profiles",
        "workspace_invitations",
        "invitations",
        "workspace_members",
        "users",
    ):
        op.drop_table(table)
