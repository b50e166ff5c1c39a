"""A viewer reads links but never gets their tokens (a link's token grants writing:
creating or editing a sync, entering credentials), and cannot create links."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import psycopg

from tests.api.conftest import Server
from tests.api.org_helpers import add_user, create_workspace, make_sync, pat_client
from tests.conftest import unique_name


def _token(uri: str) -> str:
    return parse_qs(urlsplit(uri).query)["auth"][0]


def test_viewer_sees_no_link_tokens_and_creates_no_links(
    server: Server, pg_conn: psycopg.Connection, pg_database: str
) -> None:
    with server.client(server.organization_token) as org:
        ws_id, key = create_workspace(org)
        _, viewer_token = add_user(org, email=f"{unique_name('v')}@example.com",
                                   workspaces=[{"id": ws_id, "role": "viewer"}])
        _, editor_token = add_user(org, email=f"{unique_name('e')}@example.com",
                                   workspaces=[{"id": ws_id, "role": "editor"}])
    with server.client(key) as ws:
        made = make_sync(ws, pg_conn, pg_database)
        create = ws.post("/sync_management_links").json()["data"]
        edit = ws.post(f"/syncs/{made.sync_id}/connect_links").json()["data"]
        connect = ws.post(f"/sources/{made.source_id}/connect_links").json()["data"]
    tokens = [_token(link["uri"]) for link in (create, edit, connect)]

    with pat_client(server, viewer_token, ws_id) as viewer:
        reads = [
            viewer.get("/sync_management_links", params={"per_page": 100}),
            viewer.get(f"/sync_management_links/{create['id']}"),
            viewer.get(f"/sync_management_links/{edit['id']}"),
            viewer.get("/source_connect_links", params={"per_page": 100}),
            viewer.get(f"/source_connect_links/{connect['id']}"),
        ]
        for response in reads:
            assert response.status_code == 200, response.text
            assert not any(token in response.text for token in tokens), response.text
        listed = reads[0].json()["data"]
        assert listed and all(link["uri"] is None for link in listed)
        assert reads[1].json()["data"]["id"] == create["id"]  # still readable, minus the uri

        for path in ("/sync_management_links", f"/syncs/{made.sync_id}/connect_links",
                     "/source_connect_links", f"/sources/{made.source_id}/connect_links",
                     f"/sync_management_links/{create['id']}/revoke"):
            assert viewer.post(path, json={}).status_code == 403, path
        syncs_before = viewer.get("/syncs").json()["pagination"]["total_records"]

    with pat_client(server, editor_token, ws_id) as editor:
        shown = editor.get(f"/sync_management_links/{create['id']}").json()["data"]
        assert _token(shown["uri"]) == tokens[0]
    with server.client(key) as ws:
        assert ws.get("/syncs").json()["pagination"]["total_records"] == syncs_before
        still = ws.get(f"/sync_management_links/{create['id']}").json()["data"]
        assert not still["revoked"]

