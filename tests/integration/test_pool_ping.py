"""PostgreSQL state connections are pinged only when they waited in the pool
(db/engine.py): a connection reused at once is not, and one the server dropped while it
waited is replaced before use, so the request never sees it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from reflow.db import engine as engine_module
from reflow.db.engine import make_engine
from tests.conftest import create_pg_database, drop_pg_database


@pytest.fixture
def pg_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, list[object]]]:
    database = create_pg_database()
    engine = make_engine(f"postgresql://postgres@127.0.0.1:5432/{database}")
    pings: list[object] = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real(conn))
    try:
        yield engine, pings
    finally:
        engine.dispose()
        drop_pg_database(database)


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_backend_pid()")))


def test_a_connection_reused_at_once_is_not_pinged(pg_engine: tuple[Engine, list[object]]) -> None:
    engine, pings = pg_engine
    first = _backend_pid(engine)
    assert [_backend_pid(engine) for _ in range(5)] == [first] * 5
    assert pings == []


def test_a_dropped_idle_connection_is_replaced_before_use(
    pg_engine: tuple[Engine, list[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, pings = pg_engine
    dropped = _backend_pid(engine)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                         autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (dropped,))
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)  # it waited long enough
    assert _backend_pid(engine) != dropped  # no error: replaced at checkout
    assert len(pings) == 1
