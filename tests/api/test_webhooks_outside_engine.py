"""Runs that end without passing through the engine still announce their end to
webhooks: a run skipped at trigger (its sync was busy) and a run canceled while queued,
received on a real loopback HTTP server from a ``reflow serve`` of this module's own.

Its own server: the test occupies every executor thread on purpose, so it needs to know
that no earlier test's run still holds one. (In two of three full runs of this round a
session server's executor thread stayed busy for minutes after the earlier tests' runs
had ended; the cause is not found yet — see the round's notes.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import STORES, Server, own_server
from tests.api.hooks_helpers import Received, create_sync, receiver, seed_table, sync_body
from tests.conftest import PG_ADMIN_USER, PG_HOST, PG_PORT

#: The server's local executor threads (REFLOW_LOCAL_WORKERS default).
WORKERS = 2


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with own_server(request.param) as srv:
        yield srv


@contextmanager
def locked(database: str, table: str) -> Iterator[None]:
    """Runs reading ``table`` wait (status ``working``) until the block ends."""
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, dbname=database) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def _trigger(api: httpx.Client, sync_id: int) -> dict[str, Any]:
    response = api.post(f"/syncs/{sync_id}/trigger")
    assert response.status_code == 200, response.text
    return api.get(f"/sync_runs/{response.json()['data']['sync_run_id']}").json()["data"]


def _wait_status(api: httpx.Client, run_id: int, statuses: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = api.get(f"/sync_runs/{run_id}").json()["data"]
        if run["status"] in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {statuses}: {run}")


def _events(requests: list[Received], run_id: int) -> dict[str, dict[str, Any]]:
    return {r.json()["event"]: r.json() for r in requests if r.json()["sync_run_id"] == run_id}


def _settled(api: httpx.Client, hook_id: int) -> None:
    """Until the hook has no pending delivery: then every recorded event was sent."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = api.get(f"/webhooks/{hook_id}/deliveries", params={"per_page": 100}).json()
        if all(d["status"] != "pending" for d in log["data"]):
            return
        time.sleep(0.1)
    raise AssertionError("webhook deliveries stayed pending")


def test_skipped_and_canceled_while_queued_runs_send_their_end_events(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    seed_table(pg_conn, pg_schema)
    busy = [create_sync(api, sync_body(api, pg_database, pg_schema)) for _ in range(WORKERS)]
    waiting = create_sync(api, sync_body(api, pg_database, pg_schema))
    with receiver() as inbox:
        hook = api.post("/webhooks", json={"name": "All", "endpoint": inbox.url}).json()["data"]
        try:
            with locked(pg_database, f'"{pg_schema}".people'):
                # every executor thread waits on the lock, so the next run stays queued
                working = [_wait_status(api, _trigger(api, s)["id"], ("working",)) for s in busy]
                skipped = _trigger(api, busy[0])
                assert skipped["status"] == "skipped"
                queued = _trigger(api, waiting)
                assert queued["status"] == "queued"
                assert api.post(f"/sync_runs/{queued['id']}/cancel").status_code == 200
                canceled = api.get(f"/sync_runs/{queued['id']}").json()["data"]
                assert (canceled["status"], canceled["canceled"]) == ("failed", True)

                got = inbox.wait_for(lambda rs: {"sync.completed", "sync.failed"}
                                     <= set(_events(rs, canceled["id"]))
                                     and "sync.completed" in _events(rs, skipped["id"]))
            for run in working:
                assert _wait_status(api, run["id"], ("completed",))["status"] == "completed"
            _settled(api, hook["id"])
            got = list(inbox.requests)

            ended = _events(got, canceled["id"])
            assert set(ended) == {"sync.triggered", "sync.completed", "sync.failed"}
            assert ended["sync.completed"] == {
                "workspace_id": ended["sync.completed"]["workspace_id"], "sync_id": waiting,
                "sync_run_id": canceled["id"], "status": "emergency", "event": "sync.completed"}
            # a skipped run neither started, succeeded nor failed: it only completed
            assert _events(got, skipped["id"]) == {"sync.completed": {
                "workspace_id": ended["sync.completed"]["workspace_id"], "sync_id": busy[0],
                "sync_run_id": skipped["id"], "status": "ok", "event": "sync.completed"}}
        finally:
            api.delete(f"/webhooks/{hook['id']}")
