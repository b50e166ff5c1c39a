"""HTTP Request and Webhook destinations against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.http_request import (
    HttpRequestDestination,
    HttpRequestSyncOptions,
)
from reflow.connectors.destinations.webhook import WebhookDestination, sign
from reflow.connectors.errors import TerminalError, TransientError
from reflow.connectors.registry import destination_types
from reflow.connectors.testing import SEED_ROWS, DestinationConformance, seed_batch


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    received: list[Received] = field(default_factory=list)
    #: (status, headers, body) answered in order; then 200.
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    barrier: threading.Barrier | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> tuple[int, dict[str, str], str]:
        with self.lock:
            self.received.append(request)
            scripted = self.script.pop(0) if self.script else None
        if self.barrier is not None and request.method != "HEAD":
            self.barrier.wait()  # raises BrokenBarrierError unless requests run in parallel
        return scripted or (200, {}, "ok")

    def bodies(self) -> list[Any]:
        return [json.loads(r.body) for r in self.received if r.method != "HEAD"]


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            got = Received(self.command, self.path, dict(self.headers.items()), body)
            try:
                status, headers, text = state.answer(got)
            except threading.BrokenBarrierError:
                status, headers, text = 500, {}, "not concurrent"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            payload = text.encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


class FakeClock:
    """Clock and sleep in one: sleeping advances time instantly and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def http_dest(url: str, clock: FakeClock | None = None, **settings: Any) -> HttpRequestDestination:
    clock = clock or FakeClock()
    config = HttpRequestDestination.config_model.model_validate({"base_url": url, **settings})
    return HttpRequestDestination(config, clock=clock, sleep=clock.sleep)


def hook_dest(url: str, clock: FakeClock | None = None, **settings: Any) -> WebhookDestination:
    clock = clock or FakeClock()
    config = WebhookDestination.config_model.model_validate({"url": url, **settings})
    return WebhookDestination(config, clock=clock, sleep=clock.sleep)


def write(destination: Any, rows: list[dict[str, Any]], action: str = "upsert", *,
          options: dict[str, Any] | None = None, **kw: Any) -> Any:
    """One run's write; ``options`` is the sync's ``advanced_configuration``."""
    ctx = WriteContext(sync_id=42, run_id=9, object_name="request", key_field="id",
                       fields=("id", "name", "amount", "active"), options=options or {})
    writer = destination.open_writer(ctx, **kw)
    try:
        return writer.write(seed_batch(rows), action)
    finally:
        writer.close()


class TestHttpRequestConformance(DestinationConformance):
    merges = False

    @pytest.fixture
    def destination(self, server: Server) -> HttpRequestDestination:
        return http_dest(server.url)

    @pytest.fixture
    def bad_destination(self) -> HttpRequestDestination:
        return http_dest(closed_port_url())

    @pytest.fixture
    def object_name(self) -> str:
        return "request"

    @pytest.fixture
    def read_back(self, server: Server) -> Callable[[], list[dict[str, Any]]]:
        return server.bodies


class TestWebhookConformance(DestinationConformance):
    merges = False

    @pytest.fixture
    def destination(self, server: Server) -> WebhookDestination:
        return hook_dest(server.url + "/hook")

    @pytest.fixture
    def bad_destination(self, server: Server) -> WebhookDestination:
        server.script = [(405, {}, ""), (500, {}, "boom")]
        return hook_dest(server.url + "/hook")

    @pytest.fixture
    def object_name(self) -> str:
        return "webhook"

    @pytest.fixture
    def read_back(self, server: Server) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [r for body in server.bodies() for r in body["data"]]


# --- HTTP Request: responses and retries ----------------------------------------------


def test_4xx_rejects_every_record_of_that_request_with_the_response(server: Server) -> None:
    server.script = [(200, {}, ""), (400, {}, '{"error": "bad email"}')]
    # batch_size above 1 alone means multiple records per request (Census's key).
    result = write(http_dest(server.url), SEED_ROWS, options={"batch_size": 4})
    assert [r.index for r in result.rejected] == [4, 5]
    assert {r.reason for r in result.rejected} == {'HTTP 400: {"error": "bad email"}'}
    assert [len(b) for b in server.bodies()] == [4, 2]


def test_5xx_is_retried_with_exponential_backoff(server: Server) -> None:
    server.script = [(500, {}, "oops"), (503, {}, "oops")]
    clock = FakeClock()
    result = write(http_dest(server.url, clock), SEED_ROWS[:1])
    assert result.rejected == []
    assert len(server.received) == 3
    assert clock.sleeps == [1.0, 2.0]


def test_429_waits_for_retry_after(server: Server) -> None:
    server.script = [(429, {"Retry-After": "7"}, "slow down")]
    clock = FakeClock()
    assert write(http_dest(server.url, clock), SEED_ROWS[:1]).rejected == []
    assert clock.sleeps == [7.0] and len(server.received) == 2


def test_spent_retry_budget_raises_transient_with_retry_after(server: Server) -> None:
    server.script = [(429, {"Retry-After": "2"}, "slow down")] * 20
    with pytest.raises(TransientError) as info:
        write(http_dest(server.url), SEED_ROWS[:1])
    assert info.value.retry_after == 2.0
    assert len(server.received) == 8, "one attempt plus the 7 documented retries"


def test_long_retry_after_goes_straight_to_the_engine(server: Server) -> None:
    server.script = [(503, {"Retry-After": "3600"}, "maintenance")]
    with pytest.raises(TransientError) as info:
        write(http_dest(server.url), SEED_ROWS[:1])
    assert info.value.retry_after == 3600.0 and len(server.received) == 1


def test_unreachable_server_is_transient() -> None:
    with pytest.raises(TransientError):
        write(http_dest(closed_port_url(), max_retries=1), SEED_ROWS[:1])


# --- HTTP Request: templates ---------------------------------------------------------------


def test_templates_render_per_record_and_escape_json_strings(server: Server) -> None:
    dest = http_dest(
        server.url + "/v3", headers=[{"name": "api-key", "value": "k-1", "is_secret": True}]
    )
    options = {
        "http_method": "PUT",
        "http_endpoint": "/contacts/{{ record['id'] }}",
        "body": '{"name": "{{ record["name"] }}", "hash": "{{ record.name | sha256 }}",'
                ' "all": {{ record | only: "id", "active" | json }}}',
    }
    assert write(dest, SEED_ROWS[1:3], options=options).rejected == []
    first, second = server.received
    assert (first.method, first.path) == ("PUT", "/v3/contacts/2")
    assert first.headers["api-key"] == "k-1"
    assert json.loads(first.body)["name"] == 'quote " and, comma'
    assert json.loads(second.body) == {
        "name": "line\nbreak",
        "hash": hashlib.sha256(b"line\nbreak").hexdigest(),
        "all": {"id": 3, "active": True},
    }


def test_batch_template_iterates_records_and_tolerates_trailing_commas(server: Server) -> None:
    options = {
        "records_per_request": "multiple", "batch_size": 10,
        "body": "[{% for record in records %}{\"id\": {{ record['id'] }}},{% endfor %}]",
    }
    assert write(http_dest(server.url), SEED_ROWS, options=options).rejected == []
    assert server.bodies() == [[{"id": r["id"]} for r in SEED_ROWS]]


def test_bad_rendered_json_rejects_without_sending(server: Server) -> None:
    options = {"body": "{\"id\": {{ record['name'] }}}"}
    result = write(http_dest(server.url), SEED_ROWS[:1], options=options)
    assert "not valid JSON" in result.rejected[0].reason
    assert server.received == []


def test_unknown_column_in_template_is_terminal(server: Server) -> None:
    options = {"body": "{\"x\": {{ record['nope'] }}}"}
    with pytest.raises(TerminalError):
        write(http_dest(server.url), SEED_ROWS[:1], options=options)


@pytest.mark.parametrize(
    ("options", "field_name", "position"),
    [
        ({"body": '{\n  "a": {{ record["a" }}\n}'}, "body", "line 2, column 18"),
        ({"body_template": "{% if %}"}, "body", "line 1, column 4"),  # the old key
        ({"http_endpoint": "/x/{% if record %}"}, "http_endpoint", "line 1, column"),
        ({"batch_size": 5, "body": "{{ record.id }}"}, "body", "line 1, column 4"),
    ],
)
def test_bad_template_is_a_validation_error_naming_field_and_position(
    options: dict[str, Any], field_name: str, position: str
) -> None:
    with pytest.raises(ValidationError) as info:
        HttpRequestSyncOptions.model_validate(options)
    error = info.value.errors()[0]
    assert error["loc"] == (field_name,)
    assert position in error["msg"]


def test_template_columns_are_checked_against_the_mapped_fields() -> None:
    body = '{"a": "{{ record.id }}",\n "b": "{{ record["emial"] }}"}'
    with pytest.raises(ValidationError) as info:
        HttpRequestSyncOptions.model_validate({"body": body}, context={"fields": ["id", "email"]})
    assert "record['emial'] at line 2, column 11 is not a mapped field" in str(info.value)
    HttpRequestSyncOptions.model_validate({"body": body}, context={"fields": None})


def test_request_settings_in_old_connections_are_defaults_under_the_sync(server: Server) -> None:
    dest = http_dest(server.url, http_endpoint="/old/{{ record['id'] }}", http_method="PATCH",
                     body_template='{"n": "{{ record.name }}"}')
    assert "http_endpoint" not in dest.config.connection_details()
    write(dest, SEED_ROWS[:1])
    write(dest, SEED_ROWS[:1], options={"http_endpoint": "/new"})
    assert [(r.method, r.path, json.loads(r.body)) for r in server.received] == [
        ("PATCH", "/old/1", {"n": SEED_ROWS[0]["name"]}),
        ("PATCH", "/new", {"n": SEED_ROWS[0]["name"]}),
    ]
    with pytest.raises(ValidationError, match="body: invalid Liquid template at line 1"):
        http_dest(server.url, body_template="{% if %}")


def test_invalid_stored_options_are_terminal(server: Server) -> None:
    with pytest.raises(TerminalError, match="advanced_configuration.http_method"):
        write(http_dest(server.url), SEED_ROWS[:1], options={"http_method": "BREW"})


def test_secret_header_values_are_not_read_back() -> None:
    config = HttpRequestDestination.config_model.model_validate({
        "base_url": "http://x",
        "headers": [{"name": "api-key", "value": "s3cr3t", "is_secret": True},
                    {"name": "x-team", "value": "blue"}],
    })
    assert config.connection_details()["headers"] == [
        {"name": "api-key", "value": None, "is_secret": True},
        {"name": "x-team", "value": "blue", "is_secret": False},
    ]
    assert "s3cr3t" not in repr(config)


# --- HTTP Request: rate limit and concurrency -------------------------------------------


def test_rate_limit_spaces_requests_on_the_injected_clock(server: Server) -> None:
    clock = FakeClock()
    rows = [dict(SEED_ROWS[0], id=i) for i in range(20)]
    assert write(http_dest(server.url, clock, rate_limit_per_second=5), rows).rejected == []
    assert len(server.received) == 20
    # A bucket of 5 starts full; the other 15 requests need 3 seconds at 5 per second.
    assert 2.99 <= clock.now - 1000.0 <= 3.2


def test_sync_rate_limit_applies_within_the_connection_limit(server: Server) -> None:
    clock = FakeClock()
    rows = [dict(SEED_ROWS[0], id=i) for i in range(20)]
    dest = http_dest(server.url, clock, rate_limit_per_second=50)
    assert write(dest, rows, options={"rate_limit_per_second": 5}).rejected == []
    assert 2.99 <= clock.now - 1000.0 <= 3.2, "the sync's 5/s is the tighter limit"


def test_no_rate_limit_never_waits(server: Server) -> None:
    clock = FakeClock()
    write(http_dest(server.url, clock), SEED_ROWS)
    assert clock.sleeps == []


def test_concurrency_sends_requests_in_parallel(server: Server) -> None:
    server.barrier = threading.Barrier(3, timeout=10)
    dest = http_dest(server.url, concurrency=3, max_retries=0)
    assert write(dest, SEED_ROWS[:3]).rejected == []


def test_sync_concurrency_overrides_the_connection(server: Server) -> None:
    server.barrier = threading.Barrier(3, timeout=10)
    dest = http_dest(server.url, max_retries=0)
    assert write(dest, SEED_ROWS[:3], options={"concurrency": 3}).rejected == []


def test_without_concurrency_requests_are_serial(server: Server) -> None:
    server.barrier = threading.Barrier(2, timeout=0.5)
    with pytest.raises(TransientError):
        write(http_dest(server.url, max_retries=0), SEED_ROWS[:2])


# --- Webhook -------------------------------------------------------------------------------


def test_webhook_envelope_token_and_signature(server: Server) -> None:
    dest = hook_dest(server.url + "/hook", batch_size=4, auth_token="tok-1",
                     signing_secret="whsec", connection_name="Order events hook")
    at = datetime(2025, 3, 4, 10, 0, 2, tzinfo=UTC)
    assert write(dest, SEED_ROWS, now=at).rejected == []
    first = server.received[0]
    assert first.headers["Authorization"] == "tok-1"
    assert first.headers["X-Signature"] == sign("whsec", first.body)
    body = json.loads(first.body)
    assert {k: v for k, v in body.items() if k != "data"} == {
        "api_version": 1, "operation": "changed", "sync_run_at": "2025-03-04T10:00:02Z",
        "connection_name": "Order events hook", "model_name": None, "schema_name": None,
        "table_name": None, "sync_configuration_id": 42, "sync_configuration_name": None,
    }
    assert body["data"][0] == {"unique_id": 1, **SEED_ROWS[0]}
    assert [len(b["data"]) for b in server.bodies()] == [4, 2]


def test_webhook_signature_changes_with_the_body() -> None:
    assert sign("whsec", b"{}") != sign("whsec", b"{ }")
    assert sign("whsec", b"{}") != sign("other", b"{}")


def test_webhook_deletes_send_only_unique_id_one_per_request(server: Server) -> None:
    dest = hook_dest(server.url, use_bulk_upload=False)
    write(dest, SEED_ROWS[:2], action="delete")
    assert [(b["operation"], b["data"]) for b in server.bodies()] == [
        ("deleted", {"unique_id": 1}), ("deleted", {"unique_id": 2})]
    assert "X-Signature" not in server.received[0].headers


def test_webhook_full_record_on_deletes_is_a_sync_option(server: Server) -> None:
    dest = hook_dest(server.url, use_bulk_upload=False)
    write(dest, SEED_ROWS[:1], action="delete", options={"send_full_record_on_deletes": True})
    assert server.bodies()[0]["data"] == {"unique_id": 1, **SEED_ROWS[0]}
    server.received.clear()
    dest = hook_dest(server.url, use_bulk_upload=False, send_full_record_on_deletes=True)
    write(dest, SEED_ROWS[:1], action="delete", options={"send_full_record_on_deletes": False})
    assert server.bodies()[0]["data"] == {"unique_id": 1}


def test_webhook_unwrapped_sends_only_records(server: Server) -> None:
    write(hook_dest(server.url, wrap_data_objects=False, batch_size=10), SEED_ROWS[:2])
    assert server.bodies() == [[{"unique_id": r["id"], **r} for r in SEED_ROWS[:2]]]


def test_webhook_leaves_out_nulls_of_keep_on_null_fields(server: Server) -> None:
    ctx = WriteContext(sync_id=42, run_id=9, object_name="webhook", key_field="id",
                       fields=("id", "name", "amount", "active"),
                       keep_on_null=frozenset({"name", "amount"}))
    writer = hook_dest(server.url, wrap_data_objects=False, batch_size=10).open_writer(ctx)
    try:
        writer.write(seed_batch(SEED_ROWS[3:5]), "upsert")
    finally:
        writer.close()
    assert server.bodies() == [[{"unique_id": 4, "id": 4, "name": "", "active": None},
                                {"unique_id": 5, "id": 5, "amount": 1e6, "active": False}]]


def test_webhook_rejections_and_retries_follow_http_request(server: Server) -> None:
    server.script = [(502, {}, "gateway"), (422, {}, "nope")]
    clock = FakeClock()
    result = write(hook_dest(server.url, clock, batch_size=3), SEED_ROWS)
    assert [r.index for r in result.rejected] == [0, 1, 2]
    assert result.rejected[0].reason == "HTTP 422: nope"
    assert clock.sleeps[:1] == [1.0]


def test_webhook_connection_test_falls_back_to_an_empty_post(server: Server) -> None:
    server.script = [(405, {}, "")]
    steps = hook_dest(server.url).test_connection()
    assert [(s.step, s.status) for s in steps] == [("Verify connectivity", "success")]
    assert [(r.method, r.body) for r in server.received] == [("HEAD", b""), ("POST", b"")]


def test_webhook_connection_test_head_200_is_enough(server: Server) -> None:
    assert hook_dest(server.url).test_connection()[0].status == "success"
    assert [r.method for r in server.received] == ["HEAD"]


def test_registered() -> None:
    types = destination_types()
    assert types["http_request"] is HttpRequestDestination
    assert types["webhook"] is WebhookDestination
