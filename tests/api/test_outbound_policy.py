"""The outbound address policy through the API of a production deployment (PostgreSQL
state): loopback refused except 127.0.0.2 (``REFLOW_OUTBOUND_ALLOW``), 10.0.0.0/8 denied
(``REFLOW_OUTBOUND_DENY``). Every refused target here is either a loopback receiver
that must see no request, or an address that is never contacted (the refusal comes
before any connection)."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, start_server, stop_server, wait_for_run
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.loopback_http import Receiver, loopback_receiver

SECRET = "sekret-header-value-4711"


@pytest.fixture(scope="module")
def prod() -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="reflow-outbound-"))
    state_db = create_pg_database("reflow_outbound")
    server = start_server("postgres", home, {
        "REFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{state_db}",
        "REFLOW_OUTBOUND_ALLOW": "127.0.0.2",
        "REFLOW_OUTBOUND_DENY": "10.0.0.0/8",
    })
    yield server
    stop_server(server)
    drop_pg_database(state_db)


@pytest.fixture
def api(prod: Server) -> Iterator[httpx.Client]:
    with prod.client() as client:
        yield client


@pytest.fixture
def inside() -> Iterator[Receiver]:
    """A loopback receiver on 127.0.0.1, which this deployment refuses."""
    with loopback_receiver() as receiver:
        yield receiver


def _destination(api: httpx.Client, type_: str, credentials: dict[str, Any]) -> httpx.Response:
    return api.post("/destinations", json={"service_connection": {
        "type": type_, "name": "t", "credentials": credentials}})


def _count(api: httpx.Client) -> int:
    return int(api.get("/destinations").json()["pagination"]["total_records"])


def _secret_headers() -> list[dict[str, Any]]:
    return [{"name": "Authorization", "value": SECRET, "is_secret": True}]


@pytest.mark.parametrize(("type_", "credentials", "address", "setting"), [
    ("http_request", {"base_url": "http://169.254.169.254/latest/meta-data/"},
     "169.254.169.254", "REFLOW_OUTBOUND_ALLOW"),
    ("webhook", {"url": "http://[::ffff:169.254.169.254]/hook"},
     "::ffff:169.254.169.254", "REFLOW_OUTBOUND_ALLOW"),
    ("custom_api", {"webhook_url": "http://[::ffff:10.1.2.3]:8080/rpc?api_key=k"},
     "::ffff:10.1.2.3", "REFLOW_OUTBOUND_DENY"),
    ("http_request", {"base_url": "http://metadata.google.internal/computeMetadata/v1/"},
     "metadata.google.internal", "REFLOW_OUTBOUND_ALLOW"),
    ("s3", {"bucket": "b", "region": "us-east-1", "access_key_id": "a",
            "secret_access_key": "s", "endpoint_url": "http://169.254.169.254"},
     "169.254.169.254", "REFLOW_OUTBOUND_ALLOW"),
])
def test_internal_targets_are_a_400_naming_address_and_setting(
    api: httpx.Client, type_: str, credentials: dict[str, Any], address: str, setting: str
) -> None:
    before = _count(api)
    response = _destination(api, type_, {**credentials, "headers": _secret_headers()})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error"
    assert address in body["message"] and setting in body["message"], body
    assert _count(api) == before


def test_loopback_is_refused_in_production_and_no_request_leaves(
    api: httpx.Client, inside: Receiver
) -> None:
    for type_, credentials in [
        ("http_request", {"base_url": inside.url, "headers": _secret_headers()}),
        ("webhook", {"url": inside.url + "/hook", "auth_token": SECRET}),
        ("custom_api", {"webhook_url": inside.url + "/rpc", "auth_token": SECRET}),
    ]:
        response = _destination(api, type_, credentials)
        assert response.status_code == 400, response.text
        assert "127.0.0.1" in response.json()["message"]
        assert "REFLOW_OUTBOUND_ALLOW" in response.json()["message"]
    assert inside.requests == []  # not even the connection test's HEAD


@pytest.mark.parametrize(("type_", "field", "url"), [
    ("http_request", "base_url", "gopher://127.0.0.2:70/_SET%20x"),
    ("http_request", "base_url", "file:///etc/passwd"),
    ("webhook", "url", "gopher://127.0.0.2:70/_x"),
    ("custom_api", "webhook_url", "file:///etc/passwd"),
])
def test_non_http_schemes_are_a_400_naming_the_field(
    api: httpx.Client, type_: str, field: str, url: str
) -> None:
    before = _count(api)
    response = _destination(api, type_, {field: url})
    assert response.status_code == 400, response.text
    assert f"credentials.{field}" in response.json()["message"]
    assert "http:// or https://" in response.json()["message"]
    assert _count(api) == before


def test_workspace_webhook_endpoint_is_judged(api: httpx.Client) -> None:
    for endpoint, address in [("https://169.254.169.254/hook", "169.254.169.254"),
                              ("https://[fd00:ec2::254]/hook", "fd00:ec2::254"),
                              ("https://10.0.0.5/hook", "10.0.0.5")]:
        response = api.post("/webhooks", json={"name": "w", "endpoint": endpoint})
        assert response.status_code == 400, response.text
        assert address in response.json()["message"], response.json()


def test_database_hosts_are_judged_before_connecting(api: httpx.Client) -> None:
    response = api.post("/sources", json={"connection": {"type": "postgres", "credentials": {
        "hostname": "127.0.0.1", "port": 5432, "user": "postgres", "password": "x",
        "database": "postgres"}}})
    assert response.status_code == 400, response.text
    assert "127.0.0.1" in response.json()["message"]
    response = _destination(api, "mysql", {"hostname": "169.254.169.254", "port": 3306,
                                           "user": "root", "database": "d"})
    assert response.status_code == 400, response.text
    assert "169.254.169.254" in response.json()["message"]


def test_patch_to_a_refused_address_is_a_400_and_changes_nothing(
    api: httpx.Client, inside: Receiver
) -> None:
    with loopback_receiver("127.0.0.2") as allowed:
        created = _destination(api, "http_request", {"base_url": allowed.url})
        assert created.status_code == 201, created.text
        dest_id = created.json()["data"]["id"]
        patched = api.patch(f"/destinations/{dest_id}", json={"service_connection": {
            "credentials": {"base_url": inside.url}}})
        assert patched.status_code == 400, patched.text
        assert "127.0.0.1" in patched.json()["message"]
        details = api.get(f"/destinations/{dest_id}").json()["data"]["connection_details"]
        assert details["base_url"] == allowed.url
    assert inside.requests == []


# --- at run time: a redirect inward fails the run -------------------------------------


def _bouncer(target: str) -> tuple[ThreadingHTTPServer, str]:
    """On 127.0.0.2 (allowed): answers HEAD 200, redirects every other request to target."""
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.2:{httpd.server_address[1]}"


def test_a_redirect_into_a_refused_address_fails_the_run(
    api: httpx.Client, inside: Receiver, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.sqlite"
    with sqlite3.connect(warehouse) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("INSERT INTO people VALUES (1, 'a@x'), (2, 'b@x')")
    httpd, url = _bouncer(inside.url + "/stolen")
    try:
        source = api.post("/sources", json={"connection": {
            "type": "sqlite", "name": "w", "credentials": {"path": str(warehouse)}}})
        assert source.status_code == 201, source.text
        dest = _destination(api, "http_request", {"base_url": url})
        assert dest.status_code == 201, dest.text
        model = api.post(f"/sources/{source.json()['data']['id']}/models",
                         json={"name": "p", "query": "SELECT id, email FROM people"})
        assert model.status_code == 201, model.text
        sync = api.post("/syncs", json={
            "operation": "upsert",
            "source_attributes": {"connection_id": source.json()["data"]["id"],
                                  "object": {"type": "model", "id": model.json()["data"]["id"]}},
            "destination_attributes": {"connection_id": dest.json()["data"]["id"],
                                       "object": "request"},
            "mappings": [{"from": {"type": "column", "data": "id"}, "to": "id",
                          "is_primary_identifier": True},
                         {"from": {"type": "column", "data": "email"}, "to": "email"}],
        })
        assert sync.status_code == 200, sync.text
        trigger = api.post(f"/syncs/{sync.json()['data']['sync_id']}/trigger")
        run = wait_for_run(api, trigger.json()["data"]["sync_run_id"])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run["status"] == "failed", run
    assert "127.0.0.1" in run["error_message"] and "REFLOW_OUTBOUND_ALLOW" in run["error_message"]
    assert inside.requests == []
