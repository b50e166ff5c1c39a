"""Organization API over HTTP: users, invitations, workspaces and their key, users
and invitations; roles of personal access tokens on workspace endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, wait_for_run
from tests.api.org_helpers import (
    add_user,
    create_workspace,
    make_sync,
    new_organization,
    pat_client,
)
from tests.conftest import unique_name


@pytest.fixture
def org(server: Server) -> Iterator[httpx.Client]:
    with server.client(server.organization_token) as client:
        yield client


def _email(prefix: str = "u") -> str:
    return f"{unique_name(prefix)}@example.com"


def _error(response: httpx.Response, code: int, *words: str) -> None:
    assert response.status_code == code, response.text
    body = response.json()
    assert "status" in body and "message" in body, body
    for word in words:
        assert word in body["message"], body


def test_init_token_is_the_initial_owners_pat(org: httpx.Client) -> None:
    users = org.get("/users", params={"per_page": 100}).json()
    assert users["status"] == "success" and users["pagination"]["page"] == 1
    owner = next(u for u in users["data"] if u["email"] == "admin@localhost")
    assert owner["role"] == "admin"
    assert set(owner) >= {"id", "email", "created_at", "role"}
    assert org.get(f"/users/{owner['id']}").json()["data"] == owner
    _error(org.get("/users/999999"), 404)


def test_token_kinds_are_kept_apart(server: Server, org: httpx.Client, api: httpx.Client) -> None:
    workspace_id = api.get("/workspace").json()["data"]["id"]
    for path in (
        "/users",
        "/invitations",
        "/workspaces",
        f"/workspaces/{workspace_id}",
        f"/workspaces/{workspace_id}/api_key",
        f"/workspaces/{workspace_id}/users",
    ):
        _error(api.get(path), 403, "personal access")
    _error(api.post("/workspaces", json={"name": unique_name("ws")}), 403)
    _error(org.get("/syncs"), 403, "X-Workspace-Id")
    _error(org.post("/sources", json={}), 403)
    _error(org.get("/workspace"), 403)
    with server.client("secret-token:not-a-token") as bad:
        _error(bad.get("/users"), 401)
        _error(bad.get("/workspace"), 401)


def test_workspace_lifecycle(server: Server, org: httpx.Client) -> None:
    name = unique_name("ws")
    created = org.post(
        "/workspaces",
        json={
            "name": name,
            "notification_emails": ["ops@example.com"],
            "return_workspace_api_key": True,
        },
    )
    assert created.status_code == 201 and created.json()["status"] == "success", created.text
    data = created.json()["data"]
    assert set(data) == {
        "id",
        "name",
        "organization_id",
        "created_at",
        "notification_emails",
        "api_key",
    }
    assert data["notification_emails"] == ["ops@example.com"]
    ws_id, key = data["id"], data["api_key"]
    with server.client(key) as ws:
        own = ws.get("/workspace").json()["data"]
        assert own["id"] == ws_id and own["name"] == name
    no_key = org.post("/workspaces", json={"name": unique_name("ws")})
    assert no_key.status_code == 201 and "api_key" not in no_key.json()["data"]

    listed = org.get("/workspaces", params={"per_page": 100}).json()
    assert ws_id in [w["id"] for w in listed["data"]]
    assert org.get(f"/workspaces/{ws_id}").json()["data"]["name"] == name

    patched = org.patch(
        f"/workspaces/{ws_id}", json={"name": name + "-prod", "notification_emails": []}
    )
    assert patched.status_code == 200 and patched.json()["status"] == "updated", patched.text
    assert patched.json()["data"]["name"] == name + "-prod"
    assert patched.json()["data"]["notification_emails"] == []

    assert org.get(f"/workspaces/{ws_id}/api_key").json() == {"api_key": key}

    deleted = org.delete(f"/workspaces/{ws_id}")
    assert deleted.status_code == 200 and deleted.json() == {"status": "deleted"}
    _error(org.get(f"/workspaces/{ws_id}"), 404)
    with server.client(key) as ws:
        _error(ws.get("/workspace"), 401)


def test_workspace_bad_input_creates_nothing(org: httpx.Client) -> None:
    before = org.get("/workspaces").json()["pagination"]["total_records"]
    taken = org.get("/workspaces").json()["data"][0]["name"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 400, "name"),
        ({"name": "  "}, 400, "name"),
        ({"name": 5}, 400, "name"),
        ({"name": unique_name("ws"), "notification_emails": "a@b.c"}, 400, "notification_emails"),
        (
            {"name": unique_name("ws"), "notification_emails": ["nope"]},
            400,
            "notification_emails[0]",
        ),
        (
            {"name": unique_name("ws"), "return_workspace_api_key": "yes"},
            400,
            "return_workspace_api_key",
        ),
        ({"name": taken}, 409, "name"),
    ]
    for body, code, word in cases:
        _error(org.post("/workspaces", json=body), code, word)
    _error(org.post("/workspaces", content=b"[1]"), 400, "JSON object")
    assert org.get("/workspaces").json()["pagination"]["total_records"] == before
    _error(org.patch("/workspaces/999999", json={"name": "x"}), 404)
    _error(org.delete("/workspaces/999999"), 404)
    _error(org.get("/workspaces/999999/api_key"), 404)


def test_init_workspace_key_is_retrievable(
    server: Server, org: httpx.Client, api: httpx.Client
) -> None:
    """The init workspace's key was only stored hashed: the endpoint issues a second,
    retrievable key and the first keeps working."""
    ws_id = api.get("/workspace").json()["data"]["id"]
    first = org.get(f"/workspaces/{ws_id}/api_key")
    assert first.status_code == 200 and set(first.json()) == {"api_key"}
    assert org.get(f"/workspaces/{ws_id}/api_key").json() == first.json()
    with server.client(first.json()["api_key"]) as ws:
        assert ws.get("/workspace").json()["data"]["id"] == ws_id
    assert api.get("/workspace").status_code == 200


def test_invitations(server: Server, org: httpx.Client) -> None:
    ws_id, _ = create_workspace(org)
    email = _email("inv")
    created = org.post(
        "/invitations",
        json={"email": email, "role": "member", "workspaces": [{"id": ws_id, "role": "Viewer"}]},
    )
    assert created.status_code == 200 and created.json()["status"] == "success", created.text
    inv = created.json()["data"]
    assert inv["email"] == email and inv["role"] == "member"
    assert inv["claimed_at"] is None and inv["claimed_by_id"] is None
    assert isinstance(inv["created_by_id"], int)
    assert [(a["workspace_id"], a["role"]) for a in inv["associated_workspace_invitations"]] == [
        (ws_id, "Viewer")
    ]
    _error(org.post("/invitations", json={"email": email}), 409, email)

    patched = org.patch(f"/invitations/{inv['id']}", json={"role": "admin"})
    assert patched.status_code == 200 and patched.json()["status"] == "updated"
    assert patched.json()["data"]["role"] == "admin"
    assert org.get(f"/invitations/{inv['id']}").json()["data"]["role"] == "admin"
    listed = org.get("/invitations", params={"per_page": 100}).json()
    assert inv["id"] in [i["id"] for i in listed["data"]]

    accepted = org.post(f"/invitations/{inv['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    user = accepted.json()["data"]
    assert user["email"] == email and user["role"] == "admin"
    claimed = org.get(f"/invitations/{inv['id']}").json()["data"]
    assert claimed["claimed_by_id"] == user["id"] and claimed["claimed_at"] is not None
    _error(org.patch(f"/invitations/{inv['id']}", json={"role": "member"}), 409, "claimed")
    _error(org.post(f"/invitations/{inv['id']}/accept"), 409)
    members = org.get(f"/workspaces/{ws_id}/users").json()["data"]
    assert {"id": str(user["id"]), "email": email, "role": "viewer"}.items() <= next(
        m for m in members if m["email"] == email
    ).items()
    with pat_client(server, user["personal_access_token"]) as new_pat:
        assert new_pat.get(f"/users/{user['id']}").json()["data"]["email"] == email

    revoked = org.post("/invitations", json={"email": _email("rev")}).json()["data"]
    response = org.post(f"/invitations/{revoked['id']}/revoke")
    assert response.status_code == 200 and response.json()["status"] == "success"
    _error(org.get(f"/invitations/{revoked['id']}"), 404)
    deleted = org.post("/invitations", json={"email": _email("del")}).json()["data"]
    assert org.delete(f"/invitations/{deleted['id']}").json() == {"status": "deleted"}
    _error(org.delete(f"/invitations/{deleted['id']}"), 404)


def test_invitation_bad_input(org: httpx.Client) -> None:
    before = org.get("/invitations").json()["pagination"]["total_records"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": _email(), "role": "owner"}, "role"),
        ({"email": _email(), "workspaces": {"id": 1}}, "workspaces"),
        ({"email": _email(), "workspaces": [{"id": "1"}]}, "workspaces[0].id"),
        ({"email": _email(), "workspaces": [{"id": 999999}]}, "workspaces[0].id"),
        ({"email": _email(), "workspaces": [{"id": 1, "role": "boss"}]}, "workspaces[0].role"),
    ]
    for body, word in cases:
        _error(org.post("/invitations", json=body), 400, word)
    assert org.get("/invitations").json()["pagination"]["total_records"] == before
    _error(org.patch("/invitations/999999", json={"role": "admin"}), 404)


def test_users_update_and_remove(server: Server, org: httpx.Client) -> None:
    user_id, token = add_user(org, email=_email("usr"))
    promoted = org.patch(f"/users/{user_id}", json={"user": {"role": "admin"}})
    assert promoted.status_code == 200 and promoted.json()["status"] == "updated"
    assert promoted.json()["data"]["role"] == "admin"
    _error(org.patch(f"/users/{user_id}", json={"user": {"role": "root"}}), 400, "user.role")
    _error(org.patch(f"/users/{user_id}", json={"user": "admin"}), 400, "user")
    assert (
        org.patch(f"/users/{user_id}", json={"role": "member"}).json()["data"]["role"] == "member"
    )
    with pat_client(server, token) as member:
        assert member.get("/users").status_code == 200
        _error(member.patch(f"/users/{user_id}", json={"user": {"role": "admin"}}), 403, "admin")
        _error(member.post("/workspaces", json={"name": unique_name("ws")}), 403, "admin")
        _error(member.post("/invitations", json={"email": _email()}), 403)
    assert org.delete(f"/users/{user_id}").json() == {"status": "deleted"}
    _error(org.get(f"/users/{user_id}"), 404)
    with pat_client(server, token) as gone:
        _error(gone.get("/users"), 401)


def test_last_admin_stays(server: Server) -> None:
    other = new_organization(server, owner_email="boss@example.com")
    with pat_client(server, other.owner_token) as org:
        _error(
            org.patch(f"/users/{other.owner_id}", json={"user": {"role": "member"}}),
            409,
            "last admin",
        )
        _error(org.delete(f"/users/{other.owner_id}"), 409, "last admin")
        assert org.get(f"/users/{other.owner_id}").json()["data"]["role"] == "admin"


def test_workspace_users_and_invitations(server: Server, org: httpx.Client) -> None:
    ws_id, _ = create_workspace(org)
    user_id, token = add_user(org, email=_email("wsu"))
    put = org.put(f"/workspaces/{ws_id}/users/{user_id}", json={"role": "editor"})
    assert put.status_code == 200 and put.json()["status"] == "updated", put.text
    assert put.json()["data"]["id"] == str(user_id) and put.json()["data"]["role"] == "editor"
    _error(org.put(f"/workspaces/{ws_id}/users/{user_id}", json={"role": "god"}), 400, "role")
    _error(org.put(f"/workspaces/{ws_id}/users/{user_id}", json={}), 400, "role")
    _error(org.put(f"/workspaces/{ws_id}/users/999999", json={"role": "viewer"}), 404)
    with pat_client(server, token) as editor:  # an editor is not an owner
        _error(editor.get(f"/workspaces/{ws_id}/api_key"), 403)
        _error(editor.put(f"/workspaces/{ws_id}/users/{user_id}", json={"role": "owner"}), 403)
    org.put(f"/workspaces/{ws_id}/users/{user_id}", json={"role": "owner"})
    with pat_client(server, token) as owner:  # a workspace owner may manage it
        assert "api_key" in owner.get(f"/workspaces/{ws_id}/api_key").json()

    one = org.post(
        f"/workspaces/{ws_id}/invitations", json={"emails": [_email("wi")], "role": "operator"}
    )
    assert one.status_code == 200 and one.json()["status"] == "success", one.text
    invite = one.json()["data"]
    assert set(invite) >= {"id", "email", "created_at", "created_by_id", "claimed_by_id", "role"}
    assert invite["role"] == "operator" and invite["claimed_by_id"] is None
    two = org.post(
        f"/workspaces/{ws_id}/invitations",
        json={"emails": [_email("wi"), _email("wi")], "role": "Viewer"},
    ).json()["data"]
    assert len(two) == 2 and {i["role"] for i in two} == {"viewer"}
    listed = org.get(f"/workspaces/{ws_id}/invitations").json()
    assert {invite["id"], two[0]["id"], two[1]["id"]} <= {i["id"] for i in listed["data"]}
    patched = org.patch(f"/workspaces/{ws_id}/invitations/{invite['id']}", json={"role": "editor"})
    assert patched.json()["status"] == "updated" and patched.json()["data"]["role"] == "editor"
    assert org.delete(f"/workspaces/{ws_id}/invitations/{two[0]['id']}").json() == {
        "status": "deleted"
    }
    _error(org.delete(f"/workspaces/{ws_id}/invitations/{two[0]['id']}"), 404)
    for body, word in (
        ({"emails": [], "role": "viewer"}, "emails"),
        ({"emails": ["x"], "role": "viewer"}, "emails[0]"),
        ({"emails": [_email()], "role": "boss"}, "role"),
        ({"emails": [_email()]}, "role"),
    ):
        _error(org.post(f"/workspaces/{ws_id}/invitations", json=body), 400, word)

    # An existing user is added at once; the invitation is born claimed.
    direct = org.post(
        f"/workspaces/{ws_id}/invitations", json={"emails": ["admin@localhost"], "role": "viewer"}
    ).json()["data"]
    assert direct["claimed_by_id"] is not None
    assert org.delete(f"/workspaces/{ws_id}/users/{user_id}").json() == {"status": "deleted"}
    _error(org.delete(f"/workspaces/{ws_id}/users/{user_id}"), 404)
    assert str(user_id) not in [
        m["id"] for m in org.get(f"/workspaces/{ws_id}/users").json()["data"]
    ]


def _expect(response: httpx.Response, code: int) -> None:
    assert response.status_code == code, response.text
    if code == 403:
        assert response.json()["status"] == 403 and "role" in response.json()["message"]


def test_roles_on_workspace_endpoints(
    server: Server, org: httpx.Client, pg_conn: psycopg.Connection, pg_database: str
) -> None:
    ws_id, key = create_workspace(org)
    with server.client(key) as ws:
        made = make_sync(ws, pg_conn, pg_database)
    tokens = {}
    for role in ("viewer", "operator", "editor"):
        _, tokens[role] = add_user(
            org, email=_email(role), workspaces=[{"id": ws_id, "role": role}]
        )
    _, outsider = add_user(org, email=_email("out"))

    with pat_client(server, tokens["viewer"], ws_id) as viewer:
        _expect(viewer.get(f"/syncs/{made.sync_id}"), 200)
        _expect(viewer.get("/sources"), 200)
        _expect(viewer.patch(f"/syncs/{made.sync_id}", json={"paused": True}), 403)
        _expect(viewer.post(f"/syncs/{made.sync_id}/trigger"), 403)
        _expect(viewer.post("/destinations", json={}), 403)
        _expect(viewer.delete(f"/sources/{made.source_id}"), 403)
    with pat_client(server, tokens["operator"], ws_id) as operator:
        triggered = operator.post(f"/syncs/{made.sync_id}/trigger")
        _expect(triggered, 200)
        run_id = triggered.json()["data"]["sync_run_id"]
        with pat_client(server, tokens["viewer"], ws_id) as viewer:
            _expect(viewer.post(f"/sync_runs/{run_id}/cancel"), 403)
        _expect(operator.post(f"/sync_runs/{run_id}/cancel"), 200)
        wait_for_run(operator, run_id)
        _expect(operator.patch(f"/syncs/{made.sync_id}", json={"paused": True}), 403)
        _expect(operator.delete(f"/syncs/{made.sync_id}"), 403)
        _expect(operator.post("/sources", json={}), 403)
    with pat_client(server, tokens["editor"], ws_id) as editor:
        patched = editor.patch(f"/syncs/{made.sync_id}", json={"paused": True})
        _expect(patched, 200)
        assert patched.json()["data"]["paused"] is True
        _expect(editor.post(f"/syncs/{made.sync_id}/trigger"), 200)
        assert editor.get("/workspace").json()["data"]["id"] == ws_id
    with pat_client(server, outsider, ws_id) as nobody:
        _error(nobody.get("/syncs"), 403, "no access")
    with pat_client(server, tokens["viewer"]) as viewer:
        viewer.headers["X-Workspace-Id"] = "abc"
        _error(viewer.get("/syncs"), 400, "X-Workspace-Id")
        viewer.headers["X-Workspace-Id"] = "999999"
        _error(viewer.get("/syncs"), 404)
    with server.client(key) as ws:  # the workspace key keeps full access
        _expect(ws.patch(f"/syncs/{made.sync_id}", json={"paused": False}), 200)
    with pat_client(server, server.organization_token, ws_id) as owner:  # admins act as owners
        _expect(owner.delete(f"/syncs/{made.sync_id}"), 200)


def test_delete_workspace_with_everything_in_it(
    server: Server, org: httpx.Client, pg_conn: psycopg.Connection, pg_database: str
) -> None:
    ws_id, key = create_workspace(org)
    with server.client(key) as ws:
        made = make_sync(ws, pg_conn, pg_database)
        run_id = ws.post(f"/syncs/{made.sync_id}/trigger").json()["data"]["sync_run_id"]
        wait_for_run(ws, run_id)
    org.post(f"/workspaces/{ws_id}/invitations", json={"emails": [_email()], "role": "viewer"})
    deleted = org.delete(f"/workspaces/{ws_id}")
    assert deleted.status_code == 200, deleted.text
    with server.client(key) as ws:
        _error(ws.get(f"/syncs/{made.sync_id}"), 401)
    _error(org.get(f"/workspaces/{ws_id}/users"), 404)
