"""The API edge (issue 17 §2): the caller is authenticated before a byte of the body is
read, bodies are bounded in size and depth, integer parameters in the 64-bit range,
and unsupported Census routes and missing resources answer one clear envelope."""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from reflow.api import render
from reflow.api.app import create_app
from reflow.config import Settings
from reflow.db.tables import SyncRun
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize
from tests.api.conftest import Server

TEN_MB = 10 * 1024 * 1024


def _raw_request(server: Server, head: str, timeout: float = 5) -> tuple[int, dict]:
    """Sends only the request head of a request that announces a large body and reads
    the answer: it can only come if the server decided without reading the body."""
    url = urlsplit(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head.encode() + b"\r\n")
        sock.sendall(b"{")  # a first byte of the announced body; the rest never comes
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(65536)  # socket.timeout here: the server waited for the body
            if not chunk:
                break
            data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1])
    return status, json.loads(body)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _head(method: str, path: str, *, length: int, auth: str | None = None) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {length}", "Connection: close"]
    if auth:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("auth", [None, "Bearer not-a-token", "Basic Ym9ndXM6Ym9ndXM="])
def test_unauthenticated_large_body_is_401_without_reading_it(
    server: Server, auth: str | None
) -> None:
    status, body = _raw_request(server, _head("POST", "/api/v1/sources", length=TEN_MB, auth=auth))
    assert status == 401
    assert body["status"] == 401 and "token" in body["message"]


def test_ingestion_checks_its_secret_before_reading_the_body(server: Server) -> None:
    # 4 MiB: under the ingestion limit, so only the secret can answer before the body
    head = _head("POST", "/ingest/1/events", length=4 * 1024 * 1024, auth="Bearer wrong-secret")
    status, body = _raw_request(server, head)
    assert status == 401 and "secret" in body["message"]


def test_declared_body_above_the_limit_is_413_at_once(server: Server) -> None:
    head = _head("POST", "/api/v1/sources", length=TEN_MB, auth=f"Bearer {server.workspace_token}")
    status, body = _raw_request(server, head)
    assert status == 413
    assert body == {"status": "error", "message": body["message"]}
    assert "1048576 bytes" in body["message"]


def test_ingestion_refuses_a_10_mb_body_with_a_valid_secret(
    server: Server, api: httpx.Client
) -> None:
    source = api.post("/sources", json={"connection": {
        "type": "http_request", "name": "Events", "credentials": {}}}).json()["data"]
    topic = api.post(f"/sources/{source['id']}/topics", json={
        "name": "big", "sample_message": {"id": 1}}).json()["data"]
    path = urlsplit(topic["ingestion_url"]).path
    head = _head("POST", path, length=TEN_MB, auth=f"Bearer {topic['ingestion_secret']}")
    status, body = _raw_request(server, head)
    assert status == 413 and "5242880 bytes" in body["message"]
    small = httpx.post(topic["ingestion_url"], json={"id": 2},
                       headers={"Authorization": f"Bearer {topic['ingestion_secret']}"})
    assert small.status_code == 202


def test_streamed_body_above_the_limit_is_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"connection": {"type": "postgres", "credentials": {"x": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}}}'

    response = api.post("/sources", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["status"] == "error"
    assert "larger than the limit" in response.json()["message"]


def test_a_body_under_the_limit_still_reaches_the_service(api: httpx.Client) -> None:
    response = api.post("/sources", json={"connection": {"type": "oracle_v1", "credentials": {}}})
    assert response.status_code == 400 and "oracle_v1" in response.json()["message"]


@pytest.mark.parametrize("depth", [65, 5000, 200_000])
def test_deeply_nested_json_is_400(api: httpx.Client, depth: int) -> None:
    raw = b"[" * depth + b"]" * depth
    response = api.post("/sources", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "status": "error", "message": "request body: JSON nested deeper than 64 levels"
    }


def test_nesting_at_the_limit_is_parsed(api: httpx.Client) -> None:
    nested: object = "x"
    for _ in range(62):  # 62 lists inside {"connection": ...}: 64 levels in all
        nested = [nested]
    body = {"connection": {"type": "postgres", "credentials": nested}}
    response = api.post("/sources", json=body)
    assert response.status_code == 400
    assert "connection.credentials" in response.json()["message"]


def test_deep_json_without_a_token_is_401(server: Server) -> None:
    raw = b"[" * 100_000
    response = httpx.post(server.base_url + "/api/v1/sources", content=raw)
    assert response.status_code == 401


def test_deep_json_in_topic_ingestion_is_not_a_500(server: Server) -> None:
    raw = b"[" * 100_000
    response = httpx.post(server.base_url + "/ingest/1/events", content=raw,
                          headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


def test_a_model_query_longer_than_the_limit_is_400_naming_query(api: httpx.Client) -> None:
    query = "select 1 " + " " * 100_000
    for path in ("/sources/1/models", "/datasets"):
        response = api.post(path, json={"name": "big", "query": query, "type": "sql",
                                        "source_id": 1})
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("query: longer than the limit")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (f"/syncs/{2**63}", "sync_id"),
        (f"/sync_runs/{2**64}/records", "run_id"),
        (f"/sources/1/models/{-(2**63) - 1}", "model_id"),
        (f"/syncs?page={2**63}", "page"),
        (f"/sources?per_page={10**30}", "per_page"),
        (f"/webhooks/{2**63}/deliveries", "webhook_id"),
    ],
)
def test_integers_beyond_64_bits_are_400_naming_the_parameter(
    api: httpx.Client, path: str, name: str
) -> None:
    response = api.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == "error"
    assert response.json()["message"].startswith(f"{name}: ")


@pytest.mark.parametrize("number", [2**31, 2**63 - 1, 2**70])
def test_an_id_out_of_range_inside_a_body_is_not_a_500(api: httpx.Client, number: int) -> None:
    body = {"operation": "upsert", "mappings": [],
            "source_attributes": {"connection_id": number, "object": {"type": "model", "id": 1}},
            "destination_attributes": {"connection_id": number, "object": "t"}}
    response = api.post("/syncs", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["status"] in ("error", "not_found")


def test_the_largest_64_bit_id_is_a_plain_404(api: httpx.Client) -> None:
    response = api.get(f"/syncs/{2**63 - 1}")
    assert response.status_code == 404
    assert response.json()["status"] == "not_found"


def test_an_integer_beyond_64_bits_in_ingestion_is_400(server: Server) -> None:
    response = httpx.post(f"{server.base_url}/ingest/{2**64}/events", json={"a": 1},
                          headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 400 and response.json()["message"].startswith("source_id: ")


@pytest.mark.parametrize(
    ("path", "words"),
    [("/destinations/authorize_url", "OAuth"), ("/syncs/test_status?sync_run_id=1", "test sync")],
)
def test_unsupported_census_routes_answer_404_naming_them(
    api: httpx.Client, path: str, words: str
) -> None:
    response = api.get(path)
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["status"] == "not_found"
    assert body["message"].startswith(f"GET {path.split('?')[0]} is not supported")
    assert words in body["message"]


def test_404_bodies_have_one_form_across_resources(api: httpx.Client) -> None:
    missing = 2**62
    paths = [f"/syncs/{missing}", f"/sources/{missing}", f"/destinations/{missing}",
             f"/projects/{missing}", f"/webhooks/{missing}", f"/sync_runs/{missing}",
             f"/sources/{missing}/filter_segments/1", "/no_such_route"]
    for path in paths:
        response = api.get(path)
        assert response.status_code == 404, (path, response.text)
        body = response.json()
        assert set(body) == {"status", "message"}, (path, body)
        assert body["status"] == "not_found", (path, body)
        assert "not found" in body["message"], (path, body)


def test_public_routes_need_no_token(server: Server) -> None:
    assert httpx.get(server.base_url + "/healthz").status_code == 200
    assert httpx.get(server.base_url + "/metrics").status_code == 200
    assert httpx.get(server.base_url + "/openapi.json").status_code == 200
    wizard = httpx.get(server.base_url + "/api/v1/embedded/sync_wizard?auth=bogus")
    assert wizard.status_code in (401, 404, 410)
    assert "API token" not in wizard.text  # its own link check answered, not the edge's


def test_run_error_codes_are_stable_codes_not_class_names() -> None:
    for stored, shown in [("TerminalError", "CONNECTOR_ERROR"), ("InvalidQuery", "INVALID_QUERY"),
                          ("TransientError", "CONNECTOR_UNAVAILABLE"),
                          ("SomeThirdPartyError", "CONNECTOR_ERROR"),
                          ("WORKER_LOST", "WORKER_LOST"), (None, None)]:
        run = SyncRun(id=1, sync_id=1, status="failed", error_code=stored)
        assert render.sync_run(run)["error_code"] == shown


@pytest.fixture(scope="module")
def in_process() -> Iterator[tuple[TestClient, Runtime, str]]:
    home = Path(tempfile.mkdtemp(prefix="reflow-edge-"))
    runtime = Runtime.from_settings(Settings(home=home))
    token = initialize(runtime.engine).workspace_token
    with TestClient(create_app(runtime)) as client:
        yield client, runtime, token
    runtime.engine.dispose()


def test_a_token_is_looked_up_once_per_request_good_or_bad(
    in_process: tuple[TestClient, Runtime, str],
) -> None:
    client, runtime, token = in_process
    lookups: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "api_tokens" in statement:
            lookups.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        for auth, code in [(f"Bearer {token}", 200), ("Bearer bogus", 401)]:
            lookups.clear()
            response = client.get("/api/v1/sources", headers={"Authorization": auth})
            assert response.status_code == code
            assert len(lookups) == 1, lookups
        lookups.clear()
        assert client.get("/api/v1/sources").status_code == 401
        assert lookups == []  # no token, no query
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)
