"""Workspace webhooks over the real API: CRUD and bad input, then signed lifecycle and
alert events received on a real loopback HTTP server for a successful, a failing and
a recovering run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import wait_for_run
from tests.api.hooks_helpers import Received, create_sync, receiver, seed_table, sync_body

ALL_EVENTS = ["sync.triggered", "sync.started", "sync.completed", "sync.success",
              "sync.failed", "sync.alert.raised", "sync.alert.resolved"]


def _verify(request: Received, secret: str) -> dict[str, Any]:
    expected = base64.b64encode(
        hmac.new(secret.encode(), request.body, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(request.headers["X-Signature"], expected)
    assert request.headers["Content-Type"] == "application/json"
    return request.json()


def _webhook_count(api: httpx.Client) -> int:
    return api.get("/webhooks").json()["pagination"]["total_records"]


def test_webhook_crud(api: httpx.Client) -> None:
    created = api.post("/webhooks", json={
        "name": "Alerts", "endpoint": "https://hooks.example.com/census",
        "events": ["sync.alert.raised", "sync.failed"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "created"
    hook = body["data"]
    assert hook["secret"] and len(hook["secret"]) >= 32
    assert hook["description"] is None
    assert hook["events"] == ["sync.failed", "sync.alert.raised"]
    try:
        fetched = api.get(f"/webhooks/{hook['id']}").json()
        assert fetched["status"] == "success"
        assert "secret" not in fetched["data"]
        assert fetched["data"]["endpoint"] == "https://hooks.example.com/census"
        listed = api.get("/webhooks", params={"per_page": 100}).json()
        mine = [h for h in listed["data"] if h["id"] == hook["id"]]
        assert mine and "secret" not in mine[0]

        patched = api.patch(f"/webhooks/{hook['id']}",
                            json={"events": ["sync.completed"], "description": "d"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["status"] == "updated"
        assert patched.json()["data"]["events"] == ["sync.completed"]
        assert patched.json()["data"]["description"] == "d"
        assert "secret" not in patched.json()["data"]

        default = api.post("/webhooks", json={"name": "All", "endpoint": "https://h.example.com"})
        assert default.json()["data"]["events"] == ALL_EVENTS
        assert default.json()["data"]["secret"] != hook["secret"]
        assert api.delete(f"/webhooks/{default.json()['data']['id']}").json() == {
            "status": "deleted"}
    finally:
        assert api.delete(f"/webhooks/{hook['id']}").status_code == 200
    assert api.get(f"/webhooks/{hook['id']}").status_code == 404
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"endpoint": "https://h.example.com"}, "name"),
    ({"name": "", "endpoint": "https://h.example.com"}, "name"),
    ({"name": "x"}, "endpoint"),
    ({"name": "x", "endpoint": "http://h.example.com/hook"}, "endpoint"),
    ({"name": "x", "endpoint": "ftp://h.example.com/hook"}, "endpoint"),
    ({"name": "x", "endpoint": "https://"}, "endpoint"),
    ({"name": "x", "endpoint": 42}, "endpoint"),
    ({"name": "x", "endpoint": "https://h.example.com", "events": ["sync.exploded"]}, "events"),
    ({"name": "x", "endpoint": "https://h.example.com", "events": []}, "events"),
    ({"name": "x", "endpoint": "https://h.example.com", "events": "sync.failed"}, "events"),
    ({"name": "x", "endpoint": "https://h.example.com", "description": 5}, "description"),
])
def test_bad_webhooks_are_rejected_whole(api: httpx.Client, body: dict[str, Any], field: str
                                         ) -> None:
    before = _webhook_count(api)
    response = api.post("/webhooks", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == "error"
    assert field in response.json()["message"]
    assert _webhook_count(api) == before


def test_bad_webhook_updates_change_nothing(api: httpx.Client) -> None:
    hook = api.post("/webhooks", json={"name": "x", "endpoint": "https://h.example.com"}).json()
    hook_id = hook["data"]["id"]
    try:
        for body, field in (({"endpoint": "http://example.com"}, "endpoint"),
                            ({"name": "ok", "events": ["nope"]}, "events"),
                            ({"secret": "mine"}, "secret")):
            response = api.patch(f"/webhooks/{hook_id}", json=body)
            assert response.status_code == 400 and field in response.json()["message"]
        assert api.get(f"/webhooks/{hook_id}").json()["data"]["name"] == "x"
        assert api.patch("/webhooks/999999", json={"name": "y"}).status_code == 404
        assert api.get("/webhooks/999999/deliveries").status_code == 404
        assert api.post("/webhooks", content=b"[1]").status_code == 400
    finally:
        api.delete(f"/webhooks/{hook_id}")


def test_loopback_http_endpoints_are_accepted(api: httpx.Client) -> None:
    for endpoint in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]:9/x"):
        response = api.post("/webhooks", json={"name": "local", "endpoint": endpoint})
        assert response.status_code == 201, response.text
        api.delete(f"/webhooks/{response.json()['data']['id']}")


def _events_of(requests: list[Received], run_id: int) -> dict[str, dict[str, Any]]:
    return {r.json()["event"]: r.json() for r in requests if r.json()["sync_run_id"] == run_id}


def _settled_deliveries(api: httpx.Client, hook_id: int, sync_id: int
                        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The delivery log once nothing of ``sync_id`` is pending (the receiver may see a
    request a moment before the deliverer records its outcome)."""
    deadline = time.monotonic() + 60
    while True:
        log = api.get(f"/webhooks/{hook_id}/deliveries",
                      params={"per_page": 100, "order": "asc"}).json()
        mine = [d for d in log["data"] if d["sync_id"] == sync_id]
        if all(d["status"] != "pending" for d in mine) or time.monotonic() > deadline:
            return log, mine
        time.sleep(0.1)


def _trigger(api: httpx.Client, sync_id: int) -> dict[str, Any]:
    response = api.post(f"/syncs/{sync_id}/trigger")
    assert response.status_code == 200, response.text
    return wait_for_run(api, response.json()["data"]["sync_run_id"])


def test_signed_lifecycle_and_alert_events(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    seed_table(pg_conn, pg_schema)
    body = sync_body(api, pg_database, pg_schema, alert_attributes=[
        {"type": "FailureAlertConfiguration", "send_for": "first_time",
         "should_send_recovery": True, "options": {}}])
    sync_id = create_sync(api, body)
    with receiver() as inbox:
        # the first delivery is refused: the deliverer retries it
        inbox.statuses[0] = 503
        hook = api.post("/webhooks", json={"name": "All", "endpoint": inbox.url}).json()["data"]
        secret = hook["secret"]
        try:
            ok_run = _trigger(api, sync_id)
            assert ok_run["status"] == "completed", ok_run["error_message"]
            done = {"sync.triggered", "sync.started", "sync.completed", "sync.success"}
            got = inbox.wait_for(lambda rs: done <= set(_events_of(rs, ok_run["id"])))
            for request in got:
                _verify(request, secret)
            events = _events_of(got, ok_run["id"])
            assert events["sync.completed"] == {
                "workspace_id": events["sync.completed"]["workspace_id"], "sync_id": sync_id,
                "sync_run_id": ok_run["id"], "status": "ok", "event": "sync.completed"}
            assert set(events["sync.triggered"]) == {"workspace_id", "sync_id", "sync_run_id",
                                                     "event"}
            assert "sync.failed" not in events

            pg_conn.execute(f'ALTER TABLE "{pg_schema}".people RENAME TO people_gone')
            bad_run = _trigger(api, sync_id)
            assert bad_run["status"] == "failed"
            needed = {"sync.completed", "sync.failed", "sync.alert.raised"}
            got = inbox.wait_for(lambda rs: needed <= set(_events_of(rs, bad_run["id"])))
            events = {e: _verify(r, secret) for r in got
                      if (e := r.json()["event"]) and r.json()["sync_run_id"] == bad_run["id"]}
            assert events["sync.completed"]["status"] == "emergency"
            raised = events["sync.alert.raised"]
            assert raised["alert_type"] == "FailureAlertConfiguration"
            assert raised["message"] == "Sync Failed"
            assert raised["details"].startswith("Sync has failed with error:")
            assert raised["followup_url"].endswith(f"/syncs/{sync_id}/sync_runs")
            assert isinstance(raised["alert_instance_id"], int)
            assert "sync.success" not in events

            alerts = api.get(f"/sync_runs/{bad_run['id']}/alerts").json()
            assert [(a["id"], a["status"]) for a in alerts["data"]] == [
                (raised["alert_instance_id"], "raised")]

            pg_conn.execute(f'ALTER TABLE "{pg_schema}".people_gone RENAME TO people')
            good_again = _trigger(api, sync_id)
            assert good_again["status"] == "completed"
            got = inbox.wait_for(
                lambda rs: "sync.alert.resolved" in _events_of(rs, good_again["id"]))
            resolved = _verify(next(r for r in got if r.json()["event"] == "sync.alert.resolved"),
                               secret)
            assert resolved["alert_instance_id"] == raised["alert_instance_id"]
            assert resolved["alert_type"] == "FailureAlertConfiguration"
            alert = api.get(f"/syncs/{sync_id}/alerts").json()["data"][0]
            assert alert["status"] == "resolved"
            assert alert["resolved_by_sync_run_id"] == good_again["id"]

            deliveries, mine = _settled_deliveries(api, hook["id"], sync_id)
            assert len(mine) >= 13 and all(d["status"] == "delivered" for d in mine)
            assert mine[0]["attempts"] == 2 and mine[0]["response_status"] == 200
            assert all("secret" not in str(d) for d in deliveries["data"])
        finally:
            api.delete(f"/webhooks/{hook['id']}")
    assert secret not in api.get(f"/syncs/{sync_id}").text
