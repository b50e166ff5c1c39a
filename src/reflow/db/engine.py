"""Engine and session factory for SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _owner_only(make_url(url).database)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               json_deserializer=json_loads)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    url = _psycopg_url(url) or url
    engine = create_engine(url, pool_size=10, max_overflow=20, json_deserializer=json_loads)
    _ping_when_idle(engine)
    return engine


def _psycopg_url(url: str) -> str | None:
    """A PostgreSQL URL with psycopg 3 as its driver (``postgres://`` and
    ``postgresql://`` name none); None for any other database."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url if url.startswith("postgresql+") else None


#: How long a polled read may run on PostgreSQL (``make_polled_read_engine``).
POLLED_READ_TIMEOUT_MS = 2000


def make_polled_read_engine(url: str) -> Engine | None:
    """PostgreSQL: a small engine of its own for the API's polled reads, which run on
    the event loop (``api/deps.polled_read``): its connections are in autocommit (no
    BEGIN, no ROLLBACK, no isolation level switched per request), writes holding the
    main pool's connections never make the loop wait for one, and a statement is
    cancelled after ``POLLED_READ_TIMEOUT_MS`` (a read that slow would hold up every
    request of the process); a new connection waits at most 2 s for the server (while
    PostgreSQL is unreachable each polled read holds the loop that long, then answers
    500). None for SQLite, whose reads use the one engine."""
    postgres = _psycopg_url(url)
    if postgres is None:
        return None
    engine = create_engine(
        postgres, pool_size=2, max_overflow=8, pool_timeout=5, isolation_level="AUTOCOMMIT",
        json_deserializer=json_loads,
        connect_args={"options": f"-c statement_timeout={POLLED_READ_TIMEOUT_MS}",
                      "connect_timeout": 2})
    _ping_when_idle(engine)
    return engine


#: A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 10.0
_CHECKED_IN = "reflow_checked_in"


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping`` for the connections that need it: one that waited in the pool
    for ``IDLE_PING_SECONDS`` (the server may have restarted or dropped it meanwhile) is
    pinged, and replaced if dead, before use. A busy API reuses its connections within
    milliseconds and pays no round trip per request for the ping (``pool_pre_ping``
    pinged on every checkout: a second round trip for a request of one statement)."""

    @event.listens_for(engine, "checkin")
    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return  # new, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc


#: Digits to "0", anything else to " ": a run of 19 digits is then a plain substring
#: search (a regular expression took longer than parsing the JSON).
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 19


def json_loads(data: str | bytes) -> Any:
    """A JSON column's value, read by orjson (a page of syncs decodes five columns a
    row) wherever it reads what ``json.loads`` reads: text with a number of 19 digits
    or more (orjson turns integers beyond 64 bits into floats) and what orjson refuses
    (NaN, lone surrogates...) go to ``json.loads``, so values come back as before."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _LONG_NUMBER not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data if isinstance(data, str) else raw)


def _owner_only(path: str | None) -> None:
    """Create the SQLite state file 0600 (credentials, token hashes, records live in it),
    or tighten an existing one; SQLite gives its -wal and -shm files the same mode."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:  # not ours to change, or a directory that does not exist yet
        pass


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets API reads proceed while a run writes its progress.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "after_commit", _run_after_commit)
    event.listen(factory, "after_rollback", _drop_after_commit)
    return factory


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction commits (never if it rolls
    back): work enqueued inside a transaction is released only after it commits."""
    session.info.setdefault("after_commit", []).append(callback)


def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()


def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)
