"""Source and destination connect links over the real API: create, list, fetch,
revoke, re-authorize, and the HTML page a link's uri opens (no API token), which
creates the connection with the usual test and grants nothing once the link is
revoked, expired or used."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from reflow.services import connect_links
from tests.api.conftest import Server
from tests.api.state_store import runtime_of, state_rows
from tests.conftest import PG_PORT

DONE = "https://example.com/after-connect"


def _form(database: str, **extra: str) -> dict[str, str]:
    return {
        "name": "Via link",
        "credentials.hostname": "127.0.0.1",
        "credentials.port": str(PG_PORT),
        "credentials.user": "postgres",
        "credentials.password": "link-secret-value",
        "credentials.database": database,
        **extra,
    }


def _total(api: httpx.Client, path: str) -> int:
    return api.get(path).json()["pagination"]["total_records"]


def _page(server: Server, link: dict[str, Any]) -> str:
    parts = urlsplit(link["uri"])
    assert f"{parts.scheme}://{parts.netloc}" == server.base_url
    assert parts.path == "/connect" and parts.query.startswith("auth=")
    return link["uri"]


def test_source_connect_link_creates_a_source(
    server: Server, api: httpx.Client, pg_database: str
) -> None:
    created = api.post("/source_connect_links", json={"type": "postgres", "redirect_uri": DONE})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created"
    link = created.json()["data"]
    assert {k: link[k] for k in ("type", "expired", "revoked", "redirect_uri", "source_id")} == {
        "type": "postgres",
        "expired": False,
        "revoked": False,
        "redirect_uri": DONE,
        "source_id": None,
    }
    expiration = dt.datetime.fromisoformat(link["expiration"].replace("Z", "+00:00"))
    created_at = dt.datetime.fromisoformat(link["created_at"].replace("Z", "+00:00"))
    assert expiration - created_at == dt.timedelta(hours=24)
    uri = _page(server, link)
    token = uri.split("auth=", 1)[1]
    assert (
        state_rows(server, f"SELECT count(*) FROM connect_links WHERE token_hash = '{token}'")[0][0]
        == 0
    )  # stored hashed

    page = httpx.get(uri)  # no API token
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert re.search(r'<input[^>]* type="password" name="credentials.password"', page.text)
    assert 'name="credentials.hostname"' in page.text
    assert f'<form method="post" action="?auth={token}"' in page.text

    sources_before = _total(api, "/sources")
    failing = httpx.post(uri, data=_form("no_such_database_here"))
    assert failing.status_code == 400 and "Connection test failed" in failing.text
    assert "link-secret-value" not in failing.text
    assert _total(api, "/sources") == sources_before  # nothing saved, link still usable

    submitted = httpx.post(uri, data=_form(pg_database))
    assert submitted.status_code == 303, submitted.text
    assert submitted.headers["location"] == DONE
    fetched = api.get(f"/source_connect_links/{link['id']}").json()["data"]
    source = api.get(f"/sources/{fetched['source_id']}").json()["data"]
    assert source["name"] == "Via link" and source["type"] == "postgres"
    assert source["last_test_succeeded"] is True
    assert source["last_test_results"]["steps"][0]["status"] == "success"
    assert source["connection_details"]["database"] == pg_database
    assert "password" not in source["connection_details"]
    encrypted = state_rows(
        server, f"SELECT credentials_encrypted FROM sources WHERE id = {source['id']}"
    )
    assert "link-secret-value" not in encrypted[0][0]

    # used: the page and the form answer 410 and create nothing
    assert httpx.get(uri).status_code == 410
    assert httpx.post(uri, data=_form(pg_database)).status_code == 410
    assert _total(api, "/sources") == sources_before + 1
    listed = api.get("/source_connect_links", params={"per_page": 100}).json()
    assert link["id"] in [x["id"] for x in listed["data"]]


def test_revoked_expired_and_unknown_links_grant_nothing(
    server: Server, api: httpx.Client, pg_database: str
) -> None:
    link = api.post("/source_connect_links", json={"type": "postgres"}).json()["data"]
    revoked = api.post(f"/source_connect_links/{link['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "success"
    assert revoked.json()["data"]["revoked"] is True
    sources_before = _total(api, "/sources")
    assert httpx.get(link["uri"]).status_code == 410
    assert httpx.post(link["uri"], data=_form(pg_database)).status_code == 410

    runtime = runtime_of(server)
    workspace_id = state_rows(
        server, f"SELECT workspace_id FROM connect_links WHERE id = {link['id']}"
    )[0][0]
    with runtime.session() as session:
        old = connect_links.create(
            session,
            workspace_id=workspace_id,
            vault=runtime.vault,
            kind="source",
            body={"type": "postgres"},
            ttl_seconds=60,
            now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
        )
        old_id = old.id
    runtime.engine.dispose()
    expired = api.get(f"/source_connect_links/{old_id}").json()["data"]
    assert (expired["expired"], expired["revoked"], expired["source_id"]) == (True, False, None)
    assert httpx.get(expired["uri"]).status_code == 410
    assert httpx.post(expired["uri"], data=_form(pg_database)).status_code == 410
    assert _total(api, "/sources") == sources_before

    assert httpx.get(f"{server.base_url}/connect?auth=nope").status_code == 404
    assert httpx.get(f"{server.base_url}/connect").status_code == 404
    assert api.get("/source_connect_links/999999").status_code == 404
    assert api.post("/source_connect_links/999999/revoke").status_code == 404
    # a source link id is not a destination link id
    assert api.get(f"/destination_connect_links/{link['id']}").status_code == 404


def test_bad_link_input_is_a_400_naming_the_field(api: httpx.Client) -> None:
    before = _total(api, "/source_connect_links")
    for path in ("/source_connect_links", "/destination_connect_links"):
        for body, field in (
            ({}, "type"),
            ({"type": 5}, "type"),
            ({"type": "nope"}, "type"),
            ({"type": "postgres", "redirect_uri": "ftp://x"}, "redirect_uri"),
            ({"type": "postgres", "redirect_uri": 3}, "redirect_uri"),
        ):
            response = api.post(path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            assert response.json()["status"] == "error" and field in response.json()["message"]
    assert api.post("/source_connect_links", content=b"[1]").status_code == 400
    assert api.post("/sources/999999/connect_links", json={}).status_code == 404
    assert api.post("/destinations/999999/connect_links", json={}).status_code == 404
    assert _total(api, "/source_connect_links") == before


def test_reauthorize_an_existing_source(
    server: Server, api: httpx.Client, pg_database: str
) -> None:
    link = api.post("/source_connect_links", json={"type": "postgres"}).json()["data"]
    assert httpx.post(link["uri"], data=_form(pg_database)).status_code == 200  # no redirect_uri
    source_id = api.get(f"/source_connect_links/{link['id']}").json()["data"]["source_id"]

    reauth = api.post(f"/sources/{source_id}/connect_links", json={"redirect_uri": DONE})
    assert reauth.status_code == 201, reauth.text
    data = reauth.json()["data"]
    assert (data["type"], data["source_id"], data["redirect_uri"]) == ("postgres", source_id, DONE)
    page = httpx.get(data["uri"])
    assert page.status_code == 200 and "Re-authorize" in page.text
    assert f'value="{pg_database}"' in page.text  # non-secret values shown
    assert "link-secret-value" not in page.text  # secrets never

    broken = httpx.post(data["uri"], data={"credentials.database": "no_such_database_here"})
    assert broken.status_code == 400
    assert (
        api.get(f"/sources/{source_id}").json()["data"]["connection_details"]["database"]
        == pg_database
    )

    # blank password keeps the stored one; the name changes
    done = httpx.post(data["uri"], data={"name": "Renamed", "credentials.password": ""})
    assert done.status_code == 303 and done.headers["location"] == DONE
    source = api.get(f"/sources/{source_id}").json()["data"]
    assert source["name"] == "Renamed" and source["last_test_succeeded"] is True
    assert _total(api, "/sources") >= 1
    assert httpx.get(data["uri"]).status_code == 410


def test_destination_connect_links(server: Server, api: httpx.Client, pg_database: str) -> None:
    created = api.post("/destination_connect_links", json={"type": "postgres"})
    assert created.status_code == 201, created.text
    link = created.json()["data"]
    assert (link["destination_id"], link["expired"], link["revoked"]) == (None, False, False)
    assert "source_id" not in link
    page = httpx.get(_page(server, link))
    assert page.status_code == 200 and 'name="credentials.password"' in page.text
    done = httpx.post(link["uri"], data=_form(pg_database))
    assert done.status_code == 200 and "connected" in done.text
    dest_id = api.get(f"/destination_connect_links/{link['id']}").json()["data"]["destination_id"]
    destination = api.get(f"/destinations/{dest_id}").json()["data"]
    assert destination["name"] == "Via link" and destination["last_test_succeeded"] is True
    assert "password" not in destination["connection_details"]

    reauth = api.post(f"/destinations/{dest_id}/connect_links", json={})
    assert reauth.status_code == 201
    assert (reauth.json()["data"]["destination_id"], reauth.json()["data"]["type"]) == (
        dest_id,
        "postgres",
    )
    revoked = api.post(f"/destination_connect_links/{reauth.json()['data']['id']}/revoke")
    assert revoked.json()["data"]["revoked"] is True
    assert httpx.post(reauth.json()["data"]["uri"], data={"name": "x"}).status_code == 410
    assert api.get(f"/destinations/{dest_id}").json()["data"]["name"] == "Via link"
    listed = api.get("/destination_connect_links").json()
    assert {link["id"], reauth.json()["data"]["id"]} <= {x["id"] for x in listed["data"]}
