"""No secret in any log line: a server logging at INFO (root logger, httpx, uvicorn's
access log, all captured from its output) goes through a realistic flow: a source with
a password, an HTTP Request destination with an API key in its URL query, userinfo and a
secret header, a run, a workspace webhook, management and connect links opened by their
tokens, a records export downloaded. Every secret created is then searched for."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, start_server, stop_server, wait_for_run
from tests.conftest import pg_credentials, unique_name
from tests.support.loopback_http import Receiver, loopback_receiver

API_KEY = "querykey-" + unique_name("s")
USER_PASSWORD = "userinfo-" + unique_name("s")
HEADER_SECRET = "header-" + unique_name("s")
PG_PASSWORD = "pgpass-" + unique_name("s")


@pytest.fixture(scope="module")
def chatty() -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="reflow-logs-"))
    server = start_server("sqlite", home, {"REFLOW_LOG_LEVEL": "INFO"})
    yield server
    stop_server(server)


@pytest.fixture
def inbox() -> Iterator[Receiver]:
    with loopback_receiver() as receiver:
        yield receiver


def _uri_token(uri: str) -> str:
    return uri.split("auth=", 1)[1]


def test_no_secret_reaches_the_log(
    chatty: Server, inbox: Receiver, pg_conn: psycopg.Connection, pg_schema: str,
    pg_database: str,
) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".people AS SELECT g AS id, '
                    "'p' || g AS email FROM generate_series(1, 5) g")
    secrets = [API_KEY, USER_PASSWORD, HEADER_SECRET, PG_PASSWORD,
               chatty.workspace_token, chatty.organization_token]
    with chatty.client() as api:
        source = api.post("/sources", json={"connection": {"type": "postgres", "credentials": {
            **pg_credentials(pg_database), "password": PG_PASSWORD}}}).json()["data"]
        base = inbox.url.replace("http://", f"http://reflow:{USER_PASSWORD}@")
        dest = api.post("/destinations", json={"service_connection": {
            "type": "http_request", "credentials": {
                "base_url": f"{base}/in?api_key={API_KEY}",
                "headers": [{"name": "X-Api-Key", "value": HEADER_SECRET, "is_secret": True}],
            }}})
        assert dest.status_code == 201, dest.text
        model = api.post(f"/sources/{source['id']}/models", json={
            "name": "people", "query": f'SELECT * FROM "{pg_schema}".people'}).json()["data"]
        sync = api.post("/syncs", json={
            "operation": "upsert",
            "source_attributes": {"connection_id": source["id"],
                                  "object": {"type": "model", "id": model["id"]}},
            "destination_attributes": {"connection_id": dest.json()["data"]["id"],
                                       "object": "request"},
            "mappings": [{"from": {"type": "column", "data": "id"}, "to": "id",
                          "is_primary_identifier": True},
                         {"from": {"type": "column", "data": "email"}, "to": "email"}],
        }).json()["data"]
        hook = api.post("/webhooks", json={"name": "h", "endpoint": inbox.url + "/hook"})
        secrets.append(hook.json()["data"]["secret"])

        run_id = api.post(f"/syncs/{sync['sync_id']}/trigger").json()["data"]["sync_run_id"]
        assert wait_for_run(api, run_id)["status"] == "completed"
        assert any(API_KEY in r.path for r in inbox.requests)  # the key was really used

        link = api.post("/sync_management_links").json()["data"]
        connect = api.post(f"/sources/{source['id']}/connect_links").json()["data"]
        secrets += [_uri_token(link["uri"]), _uri_token(connect["uri"])]
        assert httpx.get(link["uri"], timeout=30).status_code == 200
        assert httpx.get(connect["uri"], timeout=30).status_code == 200
        export = api.get(f"/sync_runs/{run_id}/records_export").json()["urls"][0]
        assert httpx.get(export, timeout=30).status_code == 200
        path, query = export.split("?", 1)
        secrets += [path.split("/")[-2], query.split("signature=", 1)[1]]

    log = chatty.log()
    # The log did record these requests (so the search below is not vacuous) ...
    assert "HTTP Request: POST" in log and "api_key=***" in log
    assert "sync_wizard?auth=***" in log and "/records_export/***/" in log
    # ... and holds none of the secrets.
    leaked = [s for s in secrets if s in log]
    assert leaked == [], f"secrets in the server log: {leaked}"
