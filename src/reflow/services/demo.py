"""``reflow demo``: a workspace that syncs something on the embedded default, with no
other system installed.

It writes a SQLite "warehouse" with sample customers and an empty SQLite "CRM" under
``REFLOW_HOME/demo-<n>/``, then creates — through the same services the API uses — a
new workspace with a SQLite source, a "Customers" model, a SQLite destination whose
``customers`` table is keyed by ``id``, and an upsert sync between them.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from reflow.db import migrate
from reflow.db.tables import Organization
from reflow.runtime import Runtime
from reflow.services import (
    bootstrap,
    destination_objects,
    destinations,
    models,
    sources,
    syncs,
    workspace_admin,
)

PLANS = ("free", "starter", "pro", "enterprise")


@dataclass(frozen=True)
class DemoResult:
    organization_token: str | None
    workspace_id: int
    workspace_token: str
    warehouse_path: str
    crm_path: str
    source_id: int
    model_id: int
    destination_id: int
    sync_id: int


def seed(runtime: Runtime, *, customers: int = 5000) -> DemoResult:
    """Initialize the store if it is empty, then add the demo workspace."""
    fresh = None
    if not bootstrap.is_initialized(runtime.engine):
        fresh = bootstrap.initialize(runtime.engine)
    elif not migrate.is_up_to_date(runtime.engine):
        migrate.upgrade(runtime.engine)
    folder = _folder(runtime.settings.home)
    warehouse, crm = folder / "warehouse.sqlite", folder / "crm.sqlite"
    write_warehouse(warehouse, customers)
    write_crm(crm)
    with runtime.session() as session:
        if fresh is not None:  # an empty store: the demo lives in its first workspace
            workspace_id, token = fresh.workspace_id, fresh.workspace_token
        else:
            org_id = session.scalar(select(Organization.id).order_by(Organization.id).limit(1))
            assert org_id is not None  # an initialized store holds its organization
            workspace, token = workspace_admin.new_workspace(
                session, organization_id=org_id, name=f"Demo workspace ({folder.name})"
            )
            workspace_id = workspace.id
        vault = runtime.vault
        source = sources.create(
            session,
            workspace_id=workspace_id,
            vault=vault,
            type="sqlite",
            credentials={"path": str(warehouse)},
            name="Demo warehouse",
        )
        model = models.create(
            session,
            source=source,
            vault=vault,
            name="Customers",
            query="SELECT id, email, name, plan, lifetime_value FROM customers",
        )
        destination = destinations.create(
            session,
            workspace_id=workspace_id,
            vault=vault,
            type="sqlite",
            credentials={"path": str(crm)},
            name="Demo CRM",
        )
        destination_objects.refresh_now(session, destination=destination, vault=vault)
        sync = syncs.create(
            session,
            workspace_id=workspace_id,
            vault=vault,
            body={
                "label": "Customers to the demo CRM",
                "operation": "upsert",
                "source_attributes": {
                    "connection_id": source.id,
                    "object": {"type": "model", "id": model.id},
                },
                "destination_attributes": {"connection_id": destination.id, "object": "customers"},
                "mappings": [
                    {
                        "from": {"type": "column", "data": "id"},
                        "to": "id",
                        "is_primary_identifier": True,
                    },
                    *(
                        {"from": {"type": "column", "data": c}, "to": c}
                        for c in ("email", "name", "plan", "lifetime_value")
                    ),
                ],
            },
        )
        assert sync is not None
        return DemoResult(
            fresh.organization_token if fresh else None,
            workspace_id,
            token,
            str(warehouse),
            str(crm),
            source.id,
            model.id,
            destination.id,
            sync.id,
        )


def _folder(home: Path) -> Path:
    n = 1
    while (home / f"demo-{n}").exists():
        n += 1
    folder = home / f"demo-{n}"
    folder.mkdir(parents=True)
    return folder


def write_warehouse(path: Path, customers: int) -> None:
    rng = random.Random(42)
    rows = [
        (
            i,
            f"customer{i}@example.com",
            f"Customer {i}",
            rng.choice(PLANS),
            round(rng.uniform(0, 5000), 2),
        )
        for i in range(1, customers + 1)
    ]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT,"
            " plan TEXT, lifetime_value REAL)"
        )
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", rows)
    conn.close()


def write_crm(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, name TEXT, plan TEXT,"
            " lifetime_value REAL)"
        )
    conn.close()


def console_url(result: DemoResult, base_url: str) -> str:
    """The console's sign-in page, which goes on to the demo sync. It carries no
    credential: a token in a URL would stay in browser history and access logs, while
    the terminal already shows it once for the person who started Reflow."""
    return f"{base_url}/signin?next=%2Fsyncs%2F{result.sync_id}"


def instructions(result: DemoResult, base_url: str) -> str:
    auth = f'-H "Authorization: Bearer {result.workspace_token}"'
    api = f"{base_url}/api/v1"
    lines = [
        "Reflow demo workspace is ready.",
        f"  workspace_id:    {result.workspace_id}",
        f"  workspace_token: {result.workspace_token}   (shown once; keep it)",
    ]
    if result.organization_token:
        lines.append(f"  organization_token: {result.organization_token}   (shown once)")
    lines += [
        f"  warehouse: {result.warehouse_path}  (table customers)",
        f"  CRM:       {result.crm_path}  (table customers, keyed by id)",
        "",
        f"Open the web console at {console_url(result, base_url)}",
        "and sign in with the workspace_token: it opens on the demo sync; press Run now",
        "and watch the run. Or, with curl",
        "(start the server with `reflow serve` if it is not running):",
        "",
        "1. Trigger the sync (the answer carries data.sync_run_id):",
        f"   curl -X POST {auth} {api}/syncs/{result.sync_id}/trigger",
        "2. Poll the run until status is completed:",
        f"   curl {auth} {api}/sync_runs/<sync_run_id>",
        "3. Look at the destination and what arrived:",
        f"   curl {auth} {api}/destinations/{result.destination_id}/objects/customers",
        f"   sqlite3 {result.crm_path} 'SELECT count(*) FROM customers'",
        "",
        f"Change a row (sqlite3 {result.warehouse_path}"
        " \"UPDATE customers SET plan = 'pro' WHERE id = 1\") and trigger again:"
        " exactly one record is sent.",
    ]
    return "\n".join(lines)
