"""Shared by the webhook and link API tests: a real loopback HTTP receiver, and a
PostgreSQL-backed sync to run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg

from tests.conftest import pg_credentials


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    #: HTTP status to answer, per request number (0-based); 200 when absent.
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 90
                 ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                snapshot = list(self.requests)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.1)
        raise AssertionError(f"webhook deliveries did not arrive: {[r.json() for r in snapshot]}")


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                number = len(state.requests)
                state.requests.append(Received(self.path, dict(self.headers.items()), body))
            self.send_response(state.statuses.get(number, 200))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def seed_table(conn: psycopg.Connection, schema: str, rows: int = 20) -> None:
    conn.execute(f'CREATE TABLE "{schema}".people (id int, email text)')
    conn.execute(f"""INSERT INTO "{schema}".people
                     SELECT g, 'p' || g || '@example.com' FROM generate_series(1, {rows}) g""")
    conn.execute(f'CREATE TABLE "{schema}".crm (id bigint PRIMARY KEY, email text)')


def sync_body(api: httpx.Client, database: str, schema: str, **extra: Any) -> dict[str, Any]:
    """Create a source, model and destination; the body of a ``POST /syncs``."""
    source = api.post("/sources", json={"connection": {
        "type": "postgres", "name": "Warehouse", "credentials": pg_credentials(database)}})
    assert source.status_code == 201, source.text
    source_id = source.json()["data"]["id"]
    model = api.post(f"/sources/{source_id}/models", json={
        "name": "People", "query": f'SELECT * FROM "{schema}".people'})
    assert model.status_code == 201, model.text
    destination = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "name": "CRM", "credentials": pg_credentials(database)}})
    assert destination.status_code == 201, destination.text
    return {
        "label": "People to CRM",
        "operation": "upsert",
        "source_attributes": {"connection_id": source_id,
                              "object": {"type": "model", "id": model.json()["data"]["id"]}},
        "destination_attributes": {"connection_id": destination.json()["data"]["id"],
                                   "object": f"{schema}.crm"},
        "mappings": [
            {"from": {"type": "column", "data": "id"}, "to": "id", "is_primary_identifier": True},
            {"from": {"type": "column", "data": "email"}, "to": "email"},
        ],
        **extra,
    }


def create_sync(api: httpx.Client, body: dict[str, Any]) -> int:
    response = api.post("/syncs", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]["sync_id"]
