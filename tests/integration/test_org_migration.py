"""Migration 0100_org on a store initialized before users existed: each organization
gets its initial owner, and its organization tokens become the owner's tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from reflow.db import migrate
from tests.conftest import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
        yield eng
        eng.dispose()
        return
    name = create_pg_database("reflow_mig")
    eng = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    yield eng
    eng.dispose()
    drop_pg_database(name)


def test_existing_organization_tokens_get_an_owner(engine: Engine) -> None:
    config = migrate.alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001_initial")
        now = "2026-01-01 00:00:00+00:00"
        connection.execute(
            text(
                "INSERT INTO organizations (id, name, created_at, updated_at)"
                f" VALUES (7, 'Old', '{now}', '{now}')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO api_tokens (kind, organization_id, token_hash, created_at, updated_at)"
                f" VALUES ('organization', 7, 'h1', '{now}', '{now}')"
            )
        )
    migrate.upgrade(engine)
    with engine.connect() as connection:
        users = connection.execute(text("SELECT id, email, role FROM users")).all()
        assert [(u.email, u.role) for u in users] == [("admin@localhost", "admin")]
        token_user = connection.execute(
            text("SELECT user_id FROM api_tokens WHERE token_hash = 'h1'")
        ).scalar_one()
        assert token_user == users[0].id
