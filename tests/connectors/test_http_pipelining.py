"""The pipelined write path of the HTTP destinations, through the engine's delivery
(``engine.writing``) with a real HTTP Request writer, a real HTTP/1.1 server on
loopback, a real snapshot store and state store.

Batches are cut by the test (ids 1-2, 3-4, 5-6: one request each), and the server
holds a request until another one has arrived where ordering matters, so every
outcome below is decided by logic, never by timing: batch N+1 goes out while batch N
is in flight; a failure of batch N never lets batch N's records into the snapshot,
whatever N+1 does; a batch that fails once and then succeeds is acknowledged; one
keep-alive connection per request slot serves every request of the run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from reflow.config import Settings
from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.http_request import HttpRequestDestination
from reflow.connectors.errors import TransientError
from reflow.db.tables import SyncRunRecord
from reflow.engine import writing
from reflow.engine.records import SucceededLog
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.engine.writing import Delivery, deliver, finish_writer
from reflow.jobs.progress import StateReporter
from reflow.runtime import Runtime
from tests.support.delivery import working_run

#: How long the server holds a request for another one before giving up: only reached
#: when the writer has a barrier per batch (the test then fails on ``held_too_long``).
HOLD_SECONDS = 10.0


@dataclass
class Rule:
    """How the server answers requests carrying ``ids``."""

    ids: frozenset[int]
    #: Answers in order, then 200: (status, headers).
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    #: Hold the request until one carrying any of these ids has arrived.
    wait_for: frozenset[int] = frozenset()


@dataclass
class Loopback:
    url: str = ""
    rules: list[Rule] = field(default_factory=list)
    #: (ids of the request, client port) in arrival order.
    arrived: list[tuple[frozenset[int], int]] = field(default_factory=list)
    held_too_long: list[frozenset[int]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def answer(self, ids: frozenset[int], port: int) -> tuple[int, dict[str, str]]:
        with self.cond:
            self.arrived.append((ids, port))
            self.cond.notify_all()
            rule = next((r for r in self.rules if r.ids & ids), None)
            if rule is None:
                return 200, {}
            if rule.wait_for and not self.cond.wait_for(
                lambda: any(got & rule.wait_for for got, _ in self.arrived), HOLD_SECONDS
            ):
                self.held_too_long.append(ids)
            return rule.answers.pop(0) if rule.answers else (200, {})

    def requests_with(self, key: int) -> int:
        with self.cond:
            return sum(1 for ids, _ in self.arrived if key in ids)


@pytest.fixture
def server() -> Iterator[Loopback]:
    state = Loopback()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the writer's client expects

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ids = frozenset(int(r["id"]) for r in json.loads(body))
            status, headers = state.answer(ids, self.client_address[1])
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def delivery(tmp_path: Path, server: Loopback) -> Iterator[Delivery]:
    """A working run's delivery into an HTTP Request writer: 2 records a request,
    2 requests in flight, no retries inside the writer (the engine retries)."""
    runtime, sync_id, run_id = working_run(tmp_path / "home", "http_request", "request")
    config = HttpRequestDestination.config_model.model_validate(
        {"base_url": server.url, "concurrency": 2, "max_retries": 0, "timeout_seconds": 30})
    options = {"records_per_request": "multiple", "batch_size": 2}
    writer = HttpRequestDestination(config).open_writer(
        WriteContext(sync_id, run_id, "request", "id", ("id", "name"), options=options))
    store = SnapshotStore(tmp_path / "snap.duckdb")
    yield Delivery(StateReporter(runtime, run_id), run_id, writer, store, threading.Event(), {},
                   SucceededLog(runtime.settings.home, run_id))
    store.close()


def batch(*ids: int) -> pa.RecordBatch:
    keys = [str(i) for i in ids]
    return pa.RecordBatch.from_pydict({
        "id": list(ids), "name": [f"p{i}" for i in ids], KEY: keys,
        HASH: pa.array(ids, pa.uint64()),
    })


def run_batches(d: Delivery, *batches: pa.RecordBatch) -> None:
    """What ``engine.run._deliver`` does with the batches of a run."""
    try:
        for b in batches:
            deliver(d, b, "upsert", operation="upsert")
    except BaseException:
        finish_writer(d, failed=True)
        raise
    finish_writer(d, failed=False)


def snapshot_keys(d: Delivery) -> set[str]:
    assert isinstance(d.store, SnapshotStore)
    return set(d.store.delivered())


@pytest.fixture
def one_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine retries a failed batch once more (not four times with backoff)."""
    monkeypatch.setattr(writing, "TRANSIENT_ATTEMPTS", 2)


def test_the_next_batch_is_sent_while_the_previous_one_is_in_flight(
    server: Loopback, delivery: Delivery
) -> None:
    # Batch 1's request is answered only once batch 2's has arrived: with a barrier
    # per batch, batch 2 would wait for batch 1 and the server would give up.
    server.rules = [Rule(frozenset({1, 2}), wait_for=frozenset({3}))]
    run_batches(delivery, batch(1, 2), batch(3, 4), batch(5, 6))
    assert server.held_too_long == []
    assert snapshot_keys(delivery) == {"1", "2", "3", "4", "5", "6"}
    assert delivery.stats.accepted == 6 and delivery.stats.rejected == 0


def test_a_failure_in_batch_n_never_acknowledges_it_while_n_plus_1_succeeds(
    server: Loopback, delivery: Delivery, one_retry: None
) -> None:
    # Batch 2 fails every time, and its first failure is answered only after batch 3
    # went out: batch 3 succeeds while batch 2 is still unsettled.
    fail = (503, {"Retry-After": "0"})
    server.rules = [Rule(frozenset({3, 4}), answers=[fail, fail], wait_for=frozenset({5}))]
    with pytest.raises(TransientError):
        run_batches(delivery, batch(1, 2), batch(3, 4), batch(5, 6))
    assert server.held_too_long == []
    assert server.requests_with(3) == 2  # the first attempt and the engine's retry
    keys = snapshot_keys(delivery)
    assert not keys & {"3", "4"}  # never marked sent: the next run sends them again
    assert {"1", "2"} <= keys
    # Batch 3 was acknowledged by the server: committing it is allowed, never required.
    assert keys <= {"1", "2", "5", "6"}


def test_batch_n_failing_after_n_plus_1_failed_acknowledges_neither(
    server: Loopback, delivery: Delivery, one_retry: None
) -> None:
    fail = (500, {})
    server.rules = [
        Rule(frozenset({3, 4}), answers=[fail, fail], wait_for=frozenset({5})),
        Rule(frozenset({5, 6}), answers=[fail]),
    ]
    with pytest.raises(TransientError):
        run_batches(delivery, batch(1, 2), batch(3, 4), batch(5, 6))
    assert snapshot_keys(delivery) == {"1", "2"}


def test_a_batch_that_fails_once_is_retried_whole_then_acknowledged(
    server: Loopback, delivery: Delivery, one_retry: None
) -> None:
    server.rules = [Rule(frozenset({3, 4}), answers=[(503, {"Retry-After": "0"})],
                         wait_for=frozenset({5}))]
    run_batches(delivery, batch(1, 2), batch(3, 4), batch(5, 6))
    assert server.requests_with(3) == 2
    assert snapshot_keys(delivery) == {"1", "2", "3", "4", "5", "6"}
    assert delivery.stats.accepted == 6


def test_records_rejected_in_batch_n_are_its_own_while_n_plus_1_is_accepted(
    server: Loopback, delivery: Delivery
) -> None:
    server.rules = [Rule(frozenset({3, 4}), answers=[(422, {})], wait_for=frozenset({5}))]
    run_batches(delivery, batch(1, 2), batch(3, 4), batch(5, 6))
    assert snapshot_keys(delivery) == {"1", "2", "5", "6"}
    assert (delivery.stats.accepted, delivery.stats.rejected) == (4, 2)
    assert isinstance(delivery.reporter, StateReporter)
    with delivery.reporter.runtime.session() as session:
        rejected = session.scalars(select(SyncRunRecord.identifier).where(
            SyncRunRecord.run_id == delivery.run_id, SyncRunRecord.status == "rejected")).all()
    assert sorted(rejected) == ["3", "4"]


def test_one_keep_alive_connection_per_request_in_flight(
    server: Loopback, delivery: Delivery
) -> None:
    run_batches(delivery, *(batch(i, i + 1) for i in range(1, 80, 2)))
    with server.cond:
        ports = {port for _, port in server.arrived}
    assert len(server.arrived) == 40
    assert len(ports) <= 2  # concurrency 2: the connections are reused, not reopened
    assert len(snapshot_keys(delivery)) == 80


def test_a_destination_that_never_answers_ends_the_run_within_timeout_and_retries(
    tmp_path: Path, one_retry: None
) -> None:
    """A server that accepts connections and never answers: each request ends at the
    writer's timeout, the batch's retries are spent, the run fails and commits nothing."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # accepted by the kernel, never read nor answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        runtime = Runtime.from_settings(Settings(home=tmp_path / "home", secret_key="k"))
        config = HttpRequestDestination.config_model.model_validate(
            {"base_url": url, "concurrency": 2, "max_retries": 0, "timeout_seconds": 0.3})
        writer = HttpRequestDestination(config).open_writer(WriteContext(
            1, 1, "request", "id", ("id", "name"),
            options={"records_per_request": "multiple", "batch_size": 2}))
        store = SnapshotStore(tmp_path / "snap.duckdb")
        d = Delivery(StateReporter(runtime, 1), 1, writer, store, threading.Event(), {},
                     SucceededLog(runtime.settings.home, 1))
        with pytest.raises(TransientError, match="ReadTimeout"):
            run_batches(d, batch(1, 2), batch(3, 4))
        assert snapshot_keys(d) == set()
        store.close()
