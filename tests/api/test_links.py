"""Sync and segment management links over the real API: create, list, fetch, revoke,
and the token-authorised wizard endpoints, which grant nothing once a link is revoked
or used up."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg

from tests.api.conftest import Server
from tests.api.hooks_helpers import create_sync, seed_table, sync_body


def _sync_count(api: httpx.Client) -> int:
    return api.get("/syncs").json()["pagination"]["total_records"]


def _wizard(server: Server, link: dict[str, Any]) -> tuple[str, str]:
    """(path under the server, token) of a link's uri; no API token is sent."""
    parts = urlsplit(link["uri"])
    assert f"{parts.scheme}://{parts.netloc}" == server.base_url
    return parts.path, parse_qs(parts.query)["auth"][0]


def test_sync_links_create_list_fetch_revoke(
    server: Server, api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str,
    pg_database: str,
) -> None:
    seed_table(pg_conn, pg_schema)
    body = sync_body(api, pg_database, pg_schema)
    created = api.post("/sync_management_links", json={"redirect_uri": "https://example.com/done"})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created"
    link = created.json()["data"]
    assert link["type"] == "SyncConfiguration"
    assert (link["expired"], link["revoked"], link["sync_id"]) == (False, False, None)
    assert link["redirect_uri"] == "https://example.com/done"
    assert link["expiration"].endswith("Z")
    assert api.get(f"/sync_management_links/{link['id']}").json()["data"] == link
    listed = api.get("/sync_management_links", params={"per_page": 100}).json()
    assert link["id"] in [x["id"] for x in listed["data"]]
    assert listed["pagination"]["last_page"] >= 1

    path, token = _wizard(server, link)
    with httpx.Client(base_url=server.base_url, timeout=60) as anonymous:
        capability = anonymous.get(path, params={"auth": token})
        assert capability.status_code == 200, capability.text
        assert capability.json()["data"]["action"] == "create"
        assert anonymous.get(path, params={"auth": "not-a-token"}).status_code == 404
        assert anonymous.get(path).status_code == 404

        before = _sync_count(api)
        made = anonymous.post(path, params={"auth": token}, json=body)
        assert made.status_code == 200, made.text
        assert made.json()["status"] == "created"
        sync_id = made.json()["data"]["sync_id"]
        assert api.get(f"/syncs/{sync_id}").json()["data"]["label"] == "People to CRM"
        assert api.get(f"/sync_management_links/{link['id']}").json()["data"]["sync_id"] == sync_id
        # a create link is used up: it grants nothing more
        again = anonymous.post(path, params={"auth": token}, json=body)
        assert again.status_code == 410 and again.json()["status"] == "error"
        assert anonymous.get(path, params={"auth": token}).status_code == 410
        assert _sync_count(api) == before + 1

        fresh = api.post("/sync_management_links").json()["data"]
        assert fresh["redirect_uri"] is None
        revoked = api.post(f"/sync_management_links/{fresh['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["status"] == "success"
        assert revoked.json()["data"]["revoked"] is True
        fresh_path, fresh_token = _wizard(server, fresh)
        assert anonymous.get(fresh_path, params={"auth": fresh_token}).status_code == 410
        denied = anonymous.post(fresh_path, params={"auth": fresh_token}, json=body)
        assert denied.status_code == 410
        assert "revoked" in denied.json()["message"]
        assert _sync_count(api) == before + 1


def test_edit_sync_link(
    server: Server, api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str,
    pg_database: str,
) -> None:
    seed_table(pg_conn, pg_schema)
    sync_id = create_sync(api, sync_body(api, pg_database, pg_schema))
    created = api.post(f"/syncs/{sync_id}/connect_links", json={"redirect_uri": "https://e.x/y"})
    assert created.status_code == 201, created.text
    link = created.json()["data"]
    assert link["sync_id"] == sync_id
    path, token = _wizard(server, link)
    with httpx.Client(base_url=server.base_url, timeout=60) as anonymous:
        capability = anonymous.get(path, params={"auth": token}).json()["data"]
        assert (capability["action"], capability["sync_id"]) == ("edit", sync_id)
        edited = anonymous.post(path, params={"auth": token}, json={"label": "Edited"})
        assert edited.status_code == 200, edited.text
        assert edited.json() == {"status": "updated", "data": {"sync_id": sync_id}}
        bad = anonymous.post(path, params={"auth": token}, json={"paused": "yes"})
        assert bad.status_code == 400 and "paused" in bad.json()["message"]
        assert api.get(f"/syncs/{sync_id}").json()["data"]["label"] == "Edited"

        api.post(f"/sync_management_links/{link['id']}/revoke")
        denied = anonymous.post(path, params={"auth": token}, json={"label": "Hijacked"})
        assert denied.status_code == 410
        assert api.get(f"/syncs/{sync_id}").json()["data"]["label"] == "Edited"


def test_link_bad_input(api: httpx.Client) -> None:
    before = api.get("/sync_management_links").json()["pagination"]["total_records"]
    for value in (5, "not a url", "ftp://example.com/x"):
        response = api.post("/sync_management_links", json={"redirect_uri": value})
        assert response.status_code == 400, response.text
        assert "redirect_uri" in response.json()["message"]
    assert api.get("/sync_management_links").json()["pagination"]["total_records"] == before
    assert api.post("/syncs/999999/connect_links").status_code == 404
    assert api.get("/sync_management_links/999999").status_code == 404
    assert api.post("/sync_management_links/999999/revoke").status_code == 404
    assert api.post("/sources/999999/filter_segments/3/segment_management_links").status_code == 404
    with httpx.Client(base_url=str(api.base_url), timeout=30) as anonymous:
        assert anonymous.get("/sync_management_links").status_code == 401


def test_segment_links(server: Server, api: httpx.Client, pg_database: str) -> None:
    from tests.conftest import pg_credentials

    created = api.post("/segment_management_links", json={"redirect_uri": "https://e.x/s"})
    assert created.status_code == 201, created.text
    link = created.json()["data"]
    assert (link["segment_id"], link["revoked"], link["expired"]) == (None, False, False)
    source = api.post("/sources", json={"connection": {
        "type": "postgres", "name": "Segments", "credentials": pg_credentials(pg_database)}})
    source_id = source.json()["data"]["id"]
    missing = api.post(f"/sources/{source_id}/filter_segments/999999/segment_management_links")
    assert missing.status_code == 404, missing.text
    model = api.post(f"/sources/{source_id}/models", json={"name": "m", "query": "SELECT 1 AS id"})
    segment = api.post(f"/sources/{source_id}/filter_segments", json={
        "name": "Everyone", "dataset_id": model.json()["data"]["id"], "molecules": []})
    assert segment.status_code == 201, segment.text
    segment_id = segment.json()["data"]["id"]
    edit = api.post(f"/sources/{source_id}/filter_segments/{segment_id}/segment_management_links")
    assert edit.status_code == 201, edit.text
    assert (edit.json()["data"]["segment_id"], edit.json()["data"]["source_id"]) == (
        segment_id, source_id)
    listed = [x["id"] for x in api.get("/segment_management_links",
                                       params={"per_page": 100}).json()["data"]]
    assert {link["id"], edit.json()["data"]["id"]} <= set(listed)
    # segment and sync links are separate collections
    assert api.get(f"/sync_management_links/{link['id']}").status_code == 404

    path, token = _wizard(server, edit.json()["data"])
    with httpx.Client(base_url=server.base_url, timeout=60) as anonymous:
        capability = anonymous.get(path, params={"auth": token}).json()["data"]
        assert (capability["action"], capability["segment_id"]) == ("edit", segment_id)
        assert anonymous.get("/api/v1/embedded/sync_wizard",
                             params={"auth": token}).status_code == 404
        revoked = api.post(f"/segment_management_links/{edit.json()['data']['id']}/revoke")
        assert revoked.json()["data"]["revoked"] is True
        assert anonymous.get(path, params={"auth": token}).status_code == 410
