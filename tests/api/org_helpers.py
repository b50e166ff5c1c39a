"""Helpers of the organization and isolation tests: a second organization in the
server's own state store, users with a role, and a small sync in a workspace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from reflow.config import Settings
from reflow.runtime import Runtime
from reflow.services.organization import NewOrganization, create_organization
from tests.api.conftest import Server
from tests.conftest import pg_credentials, unique_name


def new_organization(server: Server, *, owner_email: str) -> NewOrganization:
    """There is no Census endpoint that creates an organization: this is the service
    call an operator's script makes, against the server's state store."""
    settings = Settings(
        home=Path(server.env["REFLOW_HOME"]), database_url=server.env.get("REFLOW_DATABASE_URL")
    )
    runtime = Runtime.from_settings(settings)
    try:
        with runtime.session() as session:
            return create_organization(
                session, name=unique_name("org"), vault=runtime.vault, owner_email=owner_email
            )
    finally:
        runtime.engine.dispose()


def pat_client(server: Server, token: str, workspace_id: int | None = None) -> httpx.Client:
    client = server.client(token)
    if workspace_id is not None:
        client.headers["X-Workspace-Id"] = str(workspace_id)
    return client


def add_user(
    org: httpx.Client,
    *,
    email: str,
    role: str = "member",
    workspaces: list[dict[str, object]] | None = None,
) -> tuple[int, str]:
    """Invite and accept: the new user's id and personal access token."""
    invited = org.post(
        "/invitations", json={"email": email, "role": role, "workspaces": workspaces or []}
    )
    assert invited.status_code == 200, invited.text
    accepted = org.post(f"/invitations/{invited.json()['data']['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    data = accepted.json()["data"]
    return data["id"], data["personal_access_token"]


def create_workspace(org: httpx.Client, name: str | None = None) -> tuple[int, str]:
    created = org.post(
        "/workspaces", json={"name": name or unique_name("ws"), "return_workspace_api_key": True}
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    return data["id"], data["api_key"]


@dataclass
class SyncSet:
    source_id: int
    model_id: int
    destination_id: int
    sync_id: int
    run_id: int | None = None


def make_sync(api: httpx.Client, conn: psycopg.Connection, database: str) -> SyncSet:
    """Source, model, destination and an upsert sync between two fresh tables."""
    schema = unique_name("iso")
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(
        f'CREATE TABLE "{schema}".src AS SELECT g AS id, g::text AS name'
        " FROM generate_series(1, 3) g"
    )
    conn.execute(f'CREATE TABLE "{schema}".dst (id bigint PRIMARY KEY, name text)')
    source = api.post(
        "/sources",
        json={
            "connection": {
                "type": "postgres",
                "name": "Warehouse",
                "credentials": pg_credentials(database),
            }
        },
    )
    assert source.status_code == 201, source.text
    source_id = source.json()["data"]["id"]
    model = api.post(
        f"/sources/{source_id}/models",
        json={"name": "Rows", "query": f'SELECT * FROM "{schema}".src'},
    )
    assert model.status_code == 201, model.text
    destination = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": "postgres",
                "name": "Target",
                "credentials": pg_credentials(database),
            }
        },
    )
    assert destination.status_code == 201, destination.text
    destination_id = destination.json()["data"]["id"]
    sync = api.post(
        "/syncs",
        json={
            "operation": "upsert",
            "source_attributes": {
                "connection_id": source_id,
                "object": {"type": "model", "id": model.json()["data"]["id"]},
            },
            "destination_attributes": {"connection_id": destination_id, "object": f"{schema}.dst"},
            "mappings": [
                {
                    "from": {"type": "column", "data": "id"},
                    "to": "id",
                    "is_primary_identifier": True,
                },
                {"from": {"type": "column", "data": "name"}, "to": "name"},
            ],
        },
    )
    assert sync.status_code == 200, sync.text
    return SyncSet(
        source_id, model.json()["data"]["id"], destination_id, sync.json()["data"]["sync_id"]
    )
