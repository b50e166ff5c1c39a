"""``db/hot.HotRead`` on PostgreSQL reads what SQLAlchemy reads (values, keys, the
statement's own literals, JSON decoded the same way), fires the engine's cursor events
once a statement, raises SQLAlchemy's exceptions and has a dead connection replaced;
what it cannot run the same way (another driver, an expanding parameter) it leaves to
SQLAlchemy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    any_,
    bindparam,
    event,
    exc,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from reflow.db.engine import make_engine, make_polled_read_engine
from reflow.db.hot import HotRead
from tests.conftest import create_pg_database, drop_pg_database

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True),
               Column("kind", String(20)), Column("doc", JSONB),
               Column("big", BigInteger), Column("at", DateTime(timezone=True)))
BY_KIND = select(things.c.id, things.c.doc, things.c.big, things.c.at,
                 things.c.kind.label("what")).where(
    things.c.kind == "a", things.c.id >= bindparam("low")).order_by(things.c.id)


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[Engine, Engine]]:
    database = create_pg_database("reflow_hot_read")
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    writer, reader = make_engine(url), make_polled_read_engine(url)
    assert reader is not None
    metadata.create_all(writer)
    with writer.begin() as conn:
        conn.execute(things.insert(), [
            {"id": 1, "kind": "a", "doc": {"n": 12345678901234567890123, "s": "é"}, "big": 2**62,
             "at": dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)},
            {"id": 2, "kind": "b", "doc": [1, 2], "big": None, "at": None},
            {"id": 3, "kind": "a", "doc": None, "big": -1, "at": None},
        ])
    try:
        yield writer, reader
    finally:
        writer.dispose()
        reader.dispose()
        drop_pg_database(database)


def test_rows_are_what_sqlalchemy_reads(engines: tuple[Engine, Engine]) -> None:
    for engine in engines:  # autocommit (the polled reads' engine) and in a transaction
        with engine.connect() as conn:
            ours = HotRead(BY_KIND).rows(conn, {"low": 1})
            theirs = conn.execute(BY_KIND, {"low": 1}).all()
        assert [tuple(r) for r in ours] == [tuple(r) for r in theirs]
        assert ours[0]._fields == tuple(theirs[0]._fields) == ("id", "doc", "big", "at", "what")
        assert ours[0].doc["n"] == 12345678901234567890123  # an int, as json.loads reads it
        assert [r.id for r in ours] == [1, 3]  # the statement's literal 'a' was bound


def test_cursor_events_fire_once_a_statement(engines: tuple[Engine, Engine]) -> None:
    _, reader = engines
    seen: list[str] = []
    before = lambda _c, _cur, sql, *_: seen.append("before " + sql[:6])  # noqa: E731
    after = lambda _c, _cur, sql, *_: seen.append("after " + sql[:6])  # noqa: E731
    event.listen(reader, "before_cursor_execute", before)
    event.listen(reader, "after_cursor_execute", after)
    try:
        with reader.connect() as conn:
            HotRead(BY_KIND).first(conn, {"low": 3})
    finally:
        event.remove(reader, "before_cursor_execute", before)
        event.remove(reader, "after_cursor_execute", after)
    assert seen == ["before SELECT", "after SELECT"]


def test_driver_errors_are_sqlalchemys(engines: tuple[Engine, Engine]) -> None:
    _, reader = engines
    with reader.connect() as conn, pytest.raises(exc.DataError):  # beyond int4
        HotRead(BY_KIND).rows(conn, {"low": 2**40})
    with reader.connect() as conn:  # the connection is still good
        assert len(HotRead(BY_KIND).rows(conn, {"low": 0})) == 2


def test_a_dead_connection_is_invalidated_and_replaced(engines: tuple[Engine, Engine]) -> None:
    _, reader = engines
    with reader.connect() as conn:
        dead = conn.scalar(text("SELECT pg_backend_pid()"))
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                         autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (dead,))
    with reader.connect() as conn, pytest.raises(exc.OperationalError) as raised:
        HotRead(BY_KIND).rows(conn, {"low": 0})
    assert raised.value.connection_invalidated
    with reader.connect() as conn:
        assert conn.scalar(text("SELECT pg_backend_pid()")) != dead
        assert len(HotRead(BY_KIND).rows(conn, {"low": 0})) == 2


def test_an_array_parameter_stands_in_for_an_expanding_in(engines: tuple[Engine, Engine]) -> None:
    ids = bindparam("ids", expanding=True)
    read = HotRead(select(things.c.id).where(things.c.id.in_(ids)), on_psycopg=select(
        things.c.id).where(things.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))))
    seen: list[str] = []
    listener = lambda _c, _cur, sql, *_: seen.append(sql)  # noqa: E731
    event.listen(engines[1], "before_cursor_execute", listener)
    try:
        with engines[1].connect() as conn:
            assert [r.id for r in read.rows(conn, {"ids": [3, 1, 2**40]})] == [1, 3]
    finally:
        event.remove(engines[1], "before_cursor_execute", listener)
    assert read._plans[engines[1].dialect] is not None and "ANY" in seen[0]


def test_what_it_cannot_run_the_same_way_is_sqlalchemys(
        engines: tuple[Engine, Engine], tmp_path: Path) -> None:
    ids = bindparam("ids", expanding=True)
    expanding = HotRead(select(things.c.id).where(things.c.id.in_(ids)))
    with engines[1].connect() as conn:
        assert [r.id for r in expanding.rows(conn, {"ids": [1, 2]})] == [1, 2]
    assert expanding._plans[engines[1].dialect] is None
    sqlite = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    metadata.create_all(sqlite)
    with sqlite.begin() as conn:
        conn.execute(things.insert(), {"id": 1, "kind": "a", "doc": {"x": 1}})
        assert [tuple(r) for r in HotRead(BY_KIND).rows(conn, {"low": 0})] == [
            (1, {"x": 1}, None, None, "a")]
    sqlite.dispose()
