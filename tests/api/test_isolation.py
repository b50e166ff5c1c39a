"""Tenancy: two organizations with two workspaces each, every workspace with a source,
model, destination, sync and run. No credential of one workspace or organization
reaches a resource of another: ids that exist elsewhere answer 404 on every read,
write, delete and trigger, and organization listings never show the other side."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, wait_for_run
from tests.api.org_helpers import (
    SyncSet,
    add_user,
    create_workspace,
    make_sync,
    new_organization,
    pat_client,
)
from tests.conftest import unique_name


@dataclass
class Tenant:
    org: str  # "A" | "B"
    workspace_id: int
    key: str
    pat: str  # an organization admin's personal access token
    sync: SyncSet


@dataclass
class World:
    tenants: list[Tenant]
    owner_ids: dict[str, int]
    invitation_ids: dict[str, int]


@pytest.fixture(scope="module")
def world(server: Server, pg_database: str) -> Iterator[World]:
    other = new_organization(server, owner_email="owner-b@example.com")
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname=pg_database, autocommit=True
    ) as conn:
        tenants = []
        pats = {"A": server.organization_token, "B": other.owner_token}
        with server.client() as api:
            a1 = api.get("/workspace").json()["data"]["id"]
        firsts = {
            "A": (a1, server.workspace_token),
            "B": (other.workspace_id, other.workspace_token),
        }
        owner_ids, invitation_ids = {}, {}
        for name, pat in pats.items():
            with server.client(pat) as org:
                second = create_workspace(org)
                owner_ids[name] = next(
                    u["id"] for u in org.get("/users").json()["data"] if u["role"] == "admin"
                )
                invitation_ids[name] = org.post(
                    "/invitations", json={"email": f"{unique_name('iso')}@example.com"}
                ).json()["data"]["id"]
            for workspace_id, key in (firsts[name], second):
                with server.client(key) as ws:
                    made = make_sync(ws, conn, pg_database)
                    made.run_id = ws.post(f"/syncs/{made.sync_id}/trigger").json()["data"][
                        "sync_run_id"
                    ]
                    wait_for_run(ws, made.run_id)
                tenants.append(Tenant(name, workspace_id, key, pat, made))
        yield World(tenants, owner_ids, invitation_ids)


def _probes(s: SyncSet) -> list[tuple[str, str, dict[str, object] | None]]:
    model = f"/sources/{s.source_id}/models/{s.model_id}"
    return [
        ("GET", f"/sources/{s.source_id}", None),
        ("PATCH", f"/sources/{s.source_id}", {"name": "stolen"}),
        ("GET", f"/sources/{s.source_id}/models", None),
        ("GET", model, None),
        ("PATCH", model, {"name": "stolen"}),
        ("GET", f"/destinations/{s.destination_id}", None),
        ("PATCH", f"/destinations/{s.destination_id}", {"name": "stolen"}),
        ("GET", f"/destinations/{s.destination_id}/objects", None),
        ("GET", f"/syncs/{s.sync_id}", None),
        ("PATCH", f"/syncs/{s.sync_id}", {"paused": True}),
        ("POST", f"/syncs/{s.sync_id}/trigger", None),
        ("GET", f"/syncs/{s.sync_id}/sync_runs", None),
        ("GET", f"/sync_runs/{s.run_id}", None),
        ("POST", f"/sync_runs/{s.run_id}/cancel", None),
        ("DELETE", f"/syncs/{s.sync_id}", None),
        ("DELETE", model, None),
        ("DELETE", f"/destinations/{s.destination_id}", None),
        ("DELETE", f"/sources/{s.source_id}", None),
    ]


def _strangers(server: Server, world: World, victim: Tenant) -> Iterator[tuple[str, httpx.Client]]:
    """Every credential except the victim workspace's own: other workspaces' keys, and
    admin tokens acting in another workspace of their own organization."""
    for other in world.tenants:
        if other is victim:
            continue
        yield f"key of {other.org}/{other.workspace_id}", server.client(other.key)
        yield (
            f"PAT of {other.org} in {other.workspace_id}",
            pat_client(server, other.pat, other.workspace_id),
        )


def test_no_credential_reaches_another_workspace(server: Server, world: World) -> None:
    for victim in world.tenants:
        for who, client in _strangers(server, world, victim):
            with client:
                for method, path, body in _probes(victim.sync):
                    response = client.request(method, path, json=body)
                    assert response.status_code == 404, f"{who}: {method} {path} -> {response.text}"
                    assert response.json()["status"] in (404, "not_found")
                listed = client.get("/syncs", params={"per_page": 100}).json()["data"]
                assert victim.sync.sync_id not in [s["id"] for s in listed], who
                sources = client.get("/sources", params={"per_page": 100}).json()["data"]
                assert victim.sync.source_id not in [s["id"] for s in sources], who
        with server.client(victim.key) as own:  # nothing above changed anything
            for method, path, _ in _probes(victim.sync):
                if method == "GET":
                    assert own.get(path).status_code == 200, path
            assert own.get(f"/syncs/{victim.sync.sync_id}").json()["data"]["paused"] is False
            runs = own.get(f"/syncs/{victim.sync.sync_id}/sync_runs").json()
            assert runs["pagination"]["total_records"] == 1


def test_pat_cannot_select_another_organizations_workspace(server: Server, world: World) -> None:
    for victim in world.tenants:
        for tenant in world.tenants:
            if tenant.org == victim.org:
                continue
            with pat_client(server, tenant.pat, victim.workspace_id) as client:
                response = client.get("/syncs")
                assert response.status_code == 404, response.text
                assert client.get(f"/syncs/{victim.sync.sync_id}").status_code == 404


def test_organization_endpoints_stay_in_their_organization(server: Server, world: World) -> None:
    for name, other in (("A", "B"), ("B", "A")):
        mine = [t for t in world.tenants if t.org == name]
        theirs = [t for t in world.tenants if t.org == other]
        with server.client(mine[0].pat) as org:
            listed = org.get("/workspaces", params={"per_page": 100}).json()["data"]
            ids = {w["id"] for w in listed}
            assert {t.workspace_id for t in mine} <= ids
            assert not ids & {t.workspace_id for t in theirs}
            users = org.get("/users", params={"per_page": 100}).json()["data"]
            assert world.owner_ids[other] not in [u["id"] for u in users]
            invitations = org.get("/invitations", params={"per_page": 100}).json()["data"]
            assert world.invitation_ids[other] not in [i["id"] for i in invitations]
            for t in theirs:
                ws = f"/workspaces/{t.workspace_id}"
                for method, path, body in (
                    ("GET", ws, None),
                    ("PATCH", ws, {"name": "stolen"}),
                    ("DELETE", ws, None),
                    ("GET", ws + "/api_key", None),
                    ("GET", ws + "/users", None),
                    ("PUT", f"{ws}/users/{world.owner_ids[other]}", {"role": "viewer"}),
                    ("GET", ws + "/invitations", None),
                    ("POST", ws + "/invitations", {"emails": ["x@example.com"], "role": "viewer"}),
                ):
                    response = org.request(method, path, json=body)
                    assert response.status_code == 404, f"{method} {path}: {response.text}"
            foreign_user = world.owner_ids[other]
            for method, body in (
                ("GET", None),
                ("PATCH", {"user": {"role": "member"}}),
                ("DELETE", None),
            ):
                assert org.request(method, f"/users/{foreign_user}", json=body).status_code == 404
            mine_ws = mine[0].workspace_id
            assert (
                org.put(
                    f"/workspaces/{mine_ws}/users/{foreign_user}", json={"role": "viewer"}
                ).status_code
                == 404
            )
            foreign_invitation = world.invitation_ids[other]
            for method, path in (
                ("GET", ""),
                ("PATCH", ""),
                ("POST", "/revoke"),
                ("POST", "/accept"),
                ("DELETE", ""),
            ):
                response = org.request(
                    method,
                    f"/invitations/{foreign_invitation}{path}",
                    json={"role": "admin"} if method == "PATCH" else None,
                )
                assert response.status_code == 404, f"{method} {path}: {response.text}"
            invited = org.post(
                "/invitations",
                json={
                    "email": f"{unique_name('x')}@example.com",
                    "workspaces": [{"id": theirs[0].workspace_id, "role": "Viewer"}],
                },
            )
            assert invited.status_code == 400, invited.text
    for t in world.tenants:  # nothing above touched the other side
        with server.client(t.key) as ws:
            assert ws.get("/workspace").json()["data"]["id"] == t.workspace_id
        with server.client(t.pat) as org:
            assert org.get(f"/workspaces/{t.workspace_id}").status_code == 200


def test_member_added_elsewhere_does_not_leak(server: Server, world: World) -> None:
    """The same email in both organizations is two users; each token sees its own."""
    email = f"{unique_name('both')}@example.com"
    ids = {}
    for name in ("A", "B"):
        tenant = next(t for t in world.tenants if t.org == name)
        with server.client(tenant.pat) as org:
            ids[name], _ = add_user(org, email=email)
    assert ids["A"] != ids["B"]
    tenant_a = next(t for t in world.tenants if t.org == "A")
    with server.client(tenant_a.pat) as org:
        assert org.get(f"/users/{ids['B']}").status_code == 404
        assert org.get(f"/users/{ids['A']}").json()["data"]["email"] == email
