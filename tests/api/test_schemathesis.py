"""Schemathesis over ``/openapi.json`` (issue 17 §2, §9): every operation, a bounded and
seeded number of generated requests each, against the app in process (embedded
SQLite state, a workspace seeded through the API with a PostgreSQL source, a
destination, a model and a sync). No server error, and every answer matches the
schema of its operation and one of its documented status codes."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from reflow.api.app import create_app
from reflow.config import Settings
from reflow.jobs.executor import make_executor
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize
from tests.api.syncing import col
from tests.conftest import create_pg_database, drop_pg_database, pg_credentials

#: Examples per operation: 133 operations x 8 takes ~50 s on two cores; 84 of them
#: answer a 2xx on the seeded workspace (the rest: 4xx for generated bad input).
EXAMPLES = 8
#: Organization API paths take the organization (personal access) token.
ORG_PREFIXES = ("/api/v1/users", "/api/v1/invitations", "/api/v1/workspaces")


class Seeded:
    def __init__(self, app: FastAPI, workspace_token: str, organization_token: str) -> None:
        self.app = app
        self.workspace_token = workspace_token
        self.organization_token = organization_token
        self.statuses: dict[str, list[int]] = {}  # operation -> status codes it answered
        self.ids: dict[str, Any] = {}  # path parameter -> a seeded resource's id

    def ids_for(self, path: str) -> dict[str, Any]:
        """Topics live on the HTTP Request source, everything else on the warehouse."""
        if "/topics" in path or path.startswith("/ingest/"):
            return {**self.ids, "source_id": self.ids["topic_source_id"]}
        if "connect_links" in path:
            return {**self.ids, "link_id": self.ids["connect_link_id"]}
        return self.ids

    def token_for(self, path: str) -> str:
        return self.organization_token if path.startswith(ORG_PREFIXES) else self.workspace_token


def _seed(client: TestClient, database: str, organization_token: str) -> dict[str, Any]:
    creds = pg_credentials(database)
    source = client.post("/api/v1/sources", json={"connection": {
        "type": "postgres", "name": "Warehouse", "credentials": creds}})
    assert source.status_code == 201, source.text
    source_id = source.json()["data"]["id"]
    destination = client.post("/api/v1/destinations", json={"service_connection": {
        "type": "postgres", "name": "Target", "credentials": creds}})
    assert destination.status_code == 201, destination.text
    model = client.post(f"/api/v1/sources/{source_id}/models",
                        json={"name": "people", "query": "select id, email from people"})
    assert model.status_code == 201, model.text
    model_id = model.json()["data"]["id"]
    destination_id = destination.json()["data"]["id"]
    sync = client.post("/api/v1/syncs", json={
        "operation": "upsert",
        "source_attributes": {"connection_id": source_id,
                              "object": {"type": "model", "id": model_id}},
        "destination_attributes": {"connection_id": destination_id,
                                   "object": "public.people_copy"},
        "mappings": [col("id", key=True), col("email")],
    })
    assert sync.status_code == 200, sync.text
    sync_id = sync.json()["data"]["sync_id"]
    run = client.post(f"/api/v1/syncs/{sync_id}/trigger")
    assert run.status_code == 200, run.text
    hook = client.post("/api/v1/webhooks", json={
        "name": "ops", "endpoint": "http://127.0.0.1:9/hook"})
    assert hook.status_code < 300, hook.text
    link = client.post("/api/v1/sync_management_links", json={})
    assert link.status_code == 201, link.text
    segment = client.post(f"/api/v1/sources/{source_id}/filter_segments", json={
        "name": "p1", "dataset_id": model_id,
        "molecules": [{"attribute": "id", "attribute_type": "property", "operator": "is",
                       "value": 1}]})
    assert segment.status_code == 201, segment.text
    http_source = client.post("/api/v1/sources", json={"connection": {
        "type": "http_request", "name": "Events", "credentials": {}}})
    assert http_source.status_code == 201, http_source.text
    http_source_id = http_source.json()["data"]["id"]
    topic = client.post(f"/api/v1/sources/{http_source_id}/topics",
                        json={"name": "signups", "sample_message": {"id": 1}})
    assert topic.status_code == 201, topic.text
    connect_link = client.post("/api/v1/source_connect_links", json={"type": "postgres"})
    assert connect_link.status_code == 201, connect_link.text
    org = {"Authorization": f"Bearer {organization_token}"}
    invitation = client.post("/api/v1/invitations", json={"email": "new@example.com"},
                             headers=org)
    assert invitation.status_code == 200, invitation.text
    return {"source_id": source_id, "destination_id": destination_id, "model_id": model_id,
            "dataset_id": model_id, "sync_id": sync_id,
            "run_id": run.json()["data"]["sync_run_id"], "webhook_id": hook.json()["data"]["id"],
            "link_id": link.json()["data"]["id"], "workspace_id": 1, "user_id": 1,
            "full_name": "public.people_copy", "segment_id": segment.json()["data"]["id"],
            "topic_id": topic.json()["data"]["id"], "topic_source_id": http_source_id,
            "topic_name": "signups", "invitation_id": invitation.json()["data"]["id"],
            "connect_link_id": connect_link.json()["data"]["id"],
            "table_id": _a_table(client, source_id)}


def _a_table(client: TestClient, source_id: int) -> int:
    """Lists the source's tables (a real refresh against PostgreSQL) and picks one."""
    key = client.post(f"/api/v1/sources/{source_id}/refresh_tables").json()["refresh_key"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/sources/{source_id}/refresh_tables_status",
                            params={"refresh_key": key}).json()["status"]
        if status != "processing":
            break
        time.sleep(0.1)
    objects = client.get(f"/api/v1/sources/{source_id}/objects", params={"per_page": 100})
    return next(o["id"] for o in objects.json()["data"] if o["type"] == "table")


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    database = create_pg_database("reflow_fuzz")
    with psycopg.connect(**_dsn(database), autocommit=True) as conn:
        conn.execute("create table people (id int primary key, email text)")
        conn.execute("insert into people select g, 'p' || g || '@example.com' "
                     "from generate_series(1, 20) g")
        conn.execute("create table people_copy (id int primary key, email text)")
    home = Path(tempfile.mkdtemp(prefix="reflow-fuzz-"))
    runtime = Runtime.from_settings(Settings(home=home, allow_http_webhooks=True))
    tokens = initialize(runtime.engine)
    runtime.executor = make_executor(runtime)
    app = create_app(runtime)
    with TestClient(app) as client:  # the lifespan: executor, scheduler, deliverer
        client.headers["Authorization"] = f"Bearer {tokens.workspace_token}"
        ids = _seed(client, database, tokens.organization_token)
        seeded = Seeded(app, tokens.workspace_token, tokens.organization_token)
        seeded.ids = ids
        yield seeded
    runtime.engine.dispose()
    drop_pg_database(database)


def _dsn(database: str) -> dict[str, Any]:
    creds = pg_credentials(database)
    return {"host": creds["hostname"], "port": creds["port"], "user": creds["user"],
            "password": creds["password"], "dbname": database}


_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same requests on every run
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
_CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


def _integer_parameters(operation: Any) -> dict[str, str]:
    """Integer path/query parameters: name -> where."""
    return {
        p["name"]: p["in"]
        for p in operation.definition.raw.get("parameters", [])
        if p.get("in") in ("path", "query") and p.get("schema", {}).get("type") == "integer"
    }


def _just_past_64_bits(case: Any, integers: dict[str, str]) -> None:
    """The boundary schemathesis' CLI coverage phase tries and its pytest path does not:
    every integer parameter at 2**63 (a 500 from OverflowError before issue 17)."""
    if case.query is None:
        case.query = {}
    for name, where in integers.items():
        (case.path_parameters if where == "path" else case.query)[name] = 2**63


def _exercise(operation: Any, seeded: Seeded) -> list[str]:
    """Up to ``EXAMPLES`` generated requests; the failures, one line each."""
    failures: list[str] = []

    examples = iter(range(10**6))

    integers = _integer_parameters(operation)

    @given(case=operation.as_strategy())
    @_SETTINGS
    def run(case: Any) -> None:
        index = next(examples)
        if index == 0 and integers:
            _just_past_64_bits(case, integers)
        elif index % 2 and case.path_parameters:  # every other one: seeded ids
            ids = seeded.ids_for(case.path)
            for name in case.path_parameters:
                case.path_parameters[name] = ids.get(name, case.path_parameters[name])
        headers = {"Authorization": f"Bearer {seeded.token_for(case.path)}"}
        try:
            response = case.call(headers=headers)
            seeded.statuses.setdefault(operation.label, []).append(response.status_code)
            case.validate_response(response, checks=_CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # collected: one run reports all
            # A FailureGroup lists the failed checks; anything else is an exception the
            # app raised (an unhandled error re-raised by the in-process client).
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()][:8]
            failures.append(f"{operation.label}: {type(exc).__name__}: {' | '.join(lines)}")

    run()
    return failures[:1]  # the first is enough to act on; the rest repeat it


def _last_if_destructive(operation: Any) -> tuple[bool, bool]:
    deleting = operation.method.upper() == "DELETE"
    return deleting, deleting and operation.path == "/api/v1/workspaces/{workspace_id}"


def test_every_operation_answers_within_its_schema(seeded: Seeded) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", seeded.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last, so the seeded resources serve every other operation first.
    operations.sort(key=_last_if_destructive)
    assert len(operations) > 120
    failures = [line for op in operations for line in _exercise(op, seeded)]
    assert not failures, "\n".join(failures)
    # Not vacuous: most operations were reached past authentication and routing, and
    # many succeeded on the seeded workspace.
    succeeded = [op for op, codes in seeded.statuses.items() if any(c < 300 for c in codes)]
    assert len(succeeded) >= 75, (len(succeeded), sorted(seeded.statuses.items()))


