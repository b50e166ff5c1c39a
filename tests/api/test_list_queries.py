"""List endpoints answer with a fixed number of SQL statements per page: a page of 30
items costs the statements of a page of 1 (counted by a SQLAlchemy event listener on
the app's own engine, in process), for every paginated list of the workspace and
organization APIs. GET /syncs also still renders each sync's own source object and
last run, and a bad token costs one statement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from reflow.api.app import create_app
from reflow.config import Settings
from reflow.db.tables import Destination, Source, SourceModel, Sync, SyncRun, Workspace
from reflow.db.tables_hooks import (
    AlertInstance,
    ManagementLink,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
)
from reflow.db.tables_links import ConnectLink, Project, ProjectModel, Topic
from reflow.db.tables_org import (
    Invitation,
    User,
    WorkspaceInvitation,
    WorkspaceMember,
    WorkspaceProfile,
)
from reflow.db.tables_sources import FilterSegment, RefreshJob, SourceTable
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize
from reflow.services.link_tokens import new_token

N = 30


@dataclass
class App:
    runtime: Runtime
    client: TestClient
    workspace_id: int
    organization_id: int
    tokens: dict[str, str]
    statements: list[str]
    ids: dict[str, int] = field(default_factory=dict)

    def count(self, who: str, path: str, per_page: int) -> tuple[list[Any], int]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        params = {"per_page": per_page}
        self.client.get(path, params=params, headers=headers)  # the token looked up once
        self.statements.clear()
        response = self.client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        # The token's lookup (once a second, services/auth.py) is not the page's.
        self.statements[:] = [s for s in self.statements if "FROM api_tokens" not in s]
        return response.json()["data"], len(self.statements)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    home: Path = tmp_path_factory.mktemp("list-queries")
    runtime = Runtime.from_settings(Settings(home=home, secret_key="k", log_level="WARNING"))
    result = initialize(runtime.engine)
    statements: list[str] = []
    event.listen(runtime.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: statements.append(sql))
    tokens = {"workspace": result.workspace_token, "organization": result.organization_token}
    with TestClient(create_app(runtime)) as client:
        yield App(runtime, client, result.workspace_id, result.organization_id, tokens,
                  statements)


def add_syncs(app: App, n: int) -> list[tuple[int, int | None, str]]:
    """``n`` syncs, each reading its own model; every other one with two runs. Returns
    (sync id, id of its last run or None, its model's name)."""
    made = []
    with app.runtime.session() as session:
        common = {"workspace_id": app.workspace_id, "credentials_encrypted": "x"}
        source, dest = Source(name="s", type="postgres", **common), Destination(
            name="d", type="http_request", **common)
        session.add_all([source, dest])
        session.flush()
        for i in range(n):
            model = SourceModel(workspace_id=app.workspace_id, source_id=source.id,
                                name=f"model {i}", query=f"SELECT {i}")
            session.add(model)
            session.flush()
            sync = Sync(workspace_id=app.workspace_id, operation="upsert", source_id=source.id,
                        source_object={"type": "model", "id": model.id},
                        destination_id=dest.id, destination_object="request", mappings=[])
            session.add(sync)
            session.flush()
            runs = [SyncRun(workspace_id=app.workspace_id, sync_id=sync.id, status=status)
                    for status in (("failed", "completed") if i % 2 else ())]
            session.add_all(runs)
            session.flush()
            made.append((sync.id, runs[-1].id if runs else None, model.name))
    return made


def test_get_syncs_renders_each_syncs_own_model_and_last_run(app: App) -> None:
    made = add_syncs(app, N)
    data, _ = app.count("workspace", "/api/v1/syncs", 100)
    by_id = {s["id"]: s for s in data}
    for sync_id, last_run_id, model_name in made:
        rendered = by_id[sync_id]
        assert rendered["last_run_id"] == last_run_id
        assert rendered["status"] == ("Up to Date" if last_run_id else "Ready")
        assert rendered["source_attributes"]["object"]["name"] == model_name
        assert rendered["source_attributes"]["object"]["type"] == "model"


@pytest.fixture(scope="module")
def seeded(app: App) -> dict[str, int]:
    """``N`` of everything each list endpoint lists."""
    ws, org, vault = app.workspace_id, app.organization_id, app.runtime.vault
    common = {"workspace_id": ws, "credentials_encrypted": "x"}
    now = dt.datetime.now(dt.UTC)
    with app.runtime.session() as session:
        sources = [Source(name=f"s{i}", type="postgres", **common) for i in range(N)]
        dests = [Destination(name=f"d{i}", type="http_request", **common) for i in range(N)]
        topic_source = Source(name="topics", type="http_request", **common)
        session.add_all([*sources, *dests, topic_source])
        session.flush()
        source = sources[0]
        models = [SourceModel(workspace_id=ws, source_id=source.id, name=f"m{i}",
                              query=f"SELECT {i}") for i in range(N)]
        session.add_all(models)
        session.flush()
        sync = Sync(workspace_id=ws, operation="upsert", source_id=source.id,
                    source_object={"type": "model", "id": models[0].id},
                    destination_id=dests[0].id, destination_object="request", mappings=[])
        session.add(sync)
        session.flush()
        runs = [SyncRun(workspace_id=ws, sync_id=sync.id, status="completed") for _ in range(N)]
        hook = Webhook(workspace_id=ws, name="h", endpoint="https://example.com/h",
                       events=["sync.completed"], secret_encrypted=vault.encrypt({"s": "x"}))
        session.add_all([*runs, hook])
        session.flush()
        events = [WebhookEvent(workspace_id=ws, event="sync.completed", sync_id=sync.id,
                               sync_run_id=r.id, dedupe_key=f"e{r.id}", body="{}") for r in runs]
        session.add_all(events)
        session.flush()
        session.add_all([WebhookDelivery(workspace_id=ws, webhook_id=hook.id, event_id=e.id)
                         for e in events])
        session.add_all([AlertInstance(workspace_id=ws, sync_id=sync.id, sync_run_id=runs[0].id,
                                       alert_id=i, alert_type="failure", message="m")
                         for i in range(N)])
        session.add_all([FilterSegment(workspace_id=ws, source_id=source.id,
                                       model_id=models[0].id, name=f"seg{i}") for i in range(N)])
        session.add_all([Topic(workspace_id=ws, source_id=topic_source.id, name=f"t{i}",
                               sample_message={}, message_schema={}, secret_hash="x")
                         for i in range(N)])
        projects = [Project(workspace_id=ws, source_id=source.id, name=f"p{i}", path="/nope")
                    for i in range(N)]
        session.add_all(projects)
        session.flush()
        session.add_all([ProjectModel(project_id=p.id, model_id=m.id, unique_id=f"model.{i}")
                         for i, (p, m) in enumerate(zip(projects, models, strict=True))])
        expiration = now + dt.timedelta(days=1)
        session.add_all([ManagementLink(workspace_id=ws, kind=kind, purpose="create",
                                        expiration=expiration, **new_token(vault))
                         for kind in ("sync", "segment") for _ in range(N)])
        session.add_all([ConnectLink(workspace_id=ws, kind=kind, type="postgres",
                                     expiration=expiration, **new_token(vault))
                         for kind in ("source", "destination") for _ in range(N)])
        session.add_all([SourceTable(workspace_id=ws, source_id=source.id, table_catalog="c",
                                     table_schema="s", table_name=f"t{i}") for i in range(N)])
        session.add(RefreshJob(workspace_id=ws, source_id=source.id, kind="tables",
                               status="completed", completed_at=now))
        # The organization: users (members of the workspace), invitations with a
        # workspace grant each, workspaces with notification emails.
        users = [User(organization_id=org, email=f"u{i}@example.com", role="member")
                 for i in range(N)]
        invites = [Invitation(organization_id=org, email=f"i{i}@example.com", role="member")
                   for i in range(N)]
        workspaces = [Workspace(organization_id=org, name=f"w{i}") for i in range(N)]
        session.add_all([*users, *invites, *workspaces])
        session.flush()
        session.add_all([WorkspaceMember(workspace_id=ws, user_id=u.id, role="viewer")
                         for u in users])
        session.add_all([WorkspaceInvitation(invitation_id=i.id, workspace_id=ws, role="viewer")
                         for i in invites])
        session.add_all([WorkspaceProfile(workspace_id=w.id, notification_emails=["a@b.c"])
                         for w in workspaces])
        return {"workspace": ws, "source": source.id, "topic_source": topic_source.id,
                "sync": sync.id, "run": runs[0].id, "webhook": hook.id}


LISTS = [
    ("workspace", "/api/v1/syncs"),
    ("workspace", "/api/v1/syncs/{sync}/sync_runs"),
    ("workspace", "/api/v1/sources"),
    ("workspace", "/api/v1/destinations"),
    ("workspace", "/api/v1/sources/{source}/models"),
    ("workspace", "/api/v1/datasets"),
    ("workspace", "/api/v1/sources/{source}/filter_segments"),
    ("workspace", "/api/v1/sources/{source}/tables"),
    ("workspace", "/api/v1/sources/{source}/projects"),
    ("workspace", "/api/v1/sources/{topic_source}/topics"),
    ("workspace", "/api/v1/webhooks/{webhook}/deliveries"),
    ("workspace", "/api/v1/sync_runs/{run}/alerts"),
    ("workspace", "/api/v1/syncs/{sync}/alerts"),
    ("workspace", "/api/v1/sync_management_links"),
    ("workspace", "/api/v1/segment_management_links"),
    ("workspace", "/api/v1/source_connect_links"),
    ("workspace", "/api/v1/destination_connect_links"),
    ("organization", "/api/v1/users"),
    ("organization", "/api/v1/invitations"),
    ("organization", "/api/v1/workspaces"),
    ("organization", "/api/v1/workspaces/{workspace}/users"),
    ("organization", "/api/v1/workspaces/{workspace}/invitations"),
]


@pytest.mark.parametrize(("who", "path"), LISTS, ids=[p for _, p in LISTS])
def test_a_page_of_30_costs_the_statements_of_a_page_of_1(
    app: App, seeded: dict[str, int], who: str, path: str
) -> None:
    url = path.format(**seeded)
    one, with_1 = app.count(who, url, 1)
    thirty, with_30 = app.count(who, url, N)
    assert len(one) == 1 and len(thirty) == N
    assert with_30 == with_1, app.statements


def test_a_bad_token_costs_one_statement(app: App) -> None:
    app.statements.clear()
    response = app.client.get("/api/v1/syncs", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert len(app.statements) == 1, app.statements


def test_totals_are_exact_on_full_partial_and_empty_pages(
    app: App, seeded: dict[str, int]
) -> None:
    """A page that is not full needs no count: its total must still be the count."""
    headers = {"Authorization": f"Bearer {app.tokens['workspace']}"}

    def page(**params: int) -> dict[str, Any]:
        response = app.client.get("/api/v1/sources", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = page(per_page=100)
    total = len(everything["data"])
    assert total > N and everything["pagination"]["total_records"] == total
    last = (total + 6) // 7
    for number in (1, last - 1, last, last + 1, 1000):
        body = page(per_page=7, page=number)
        expected = everything["data"][(number - 1) * 7:number * 7]
        assert [s["id"] for s in body["data"]] == [s["id"] for s in expected]
        assert body["pagination"]["total_records"] == total
        assert body["pagination"]["last_page"] == last


def test_a_skipped_run_is_not_the_last_run_in_the_list_nor_the_fetch(app: App) -> None:
    sync_id, _, _ = add_syncs(app, 1)[0]
    with app.runtime.session() as session:
        ran = SyncRun(workspace_id=app.workspace_id, sync_id=sync_id, status="completed")
        session.add(ran)
        session.flush()
        session.add(SyncRun(workspace_id=app.workspace_id, sync_id=sync_id, status="skipped"))
        ran_id = ran.id
    listed, _ = app.count("workspace", "/api/v1/syncs", 100)
    fetched = app.client.get(f"/api/v1/syncs/{sync_id}", headers={
        "Authorization": f"Bearer {app.tokens['workspace']}"}).json()["data"]
    for shown in ({s["id"]: s for s in listed}[sync_id], fetched):
        assert shown["last_run_id"] == ran_id and shown["status"] == "Up to Date"
