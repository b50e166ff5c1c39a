"""Read-only peeks into a test server's state store (to prove secrets are stored
hashed) and in-process use of its services (to make links that are already expired,
without waiting for a clock)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from reflow.config import Settings
from reflow.runtime import Runtime
from tests.api.conftest import Server


def state_rows(server: Server, sql: str) -> list[tuple[Any, ...]]:
    url = server.env.get("REFLOW_DATABASE_URL")
    if url:
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()
    with sqlite3.connect(Path(server.env["REFLOW_HOME"]) / "reflow.db") as conn:
        return conn.execute(sql).fetchall()


def runtime_of(server: Server) -> Runtime:
    """A Runtime on the server's state store and secret key (no executor)."""
    return Runtime.from_settings(
        Settings.model_validate(
            {
                "home": Path(server.env["REFLOW_HOME"]),
                "database_url": server.env.get("REFLOW_DATABASE_URL"),
            }
        )
    )
