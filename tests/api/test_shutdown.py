"""Stopping `reflow serve` mid-run: the run ends failed with a reason, never left
`working`; and `reflow init` on an initialized store changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

from tests.api.conftest import start_server, stop_server
from tests.conftest import pg_credentials


def _run_status(home: Path, run_id: int) -> tuple[str, str | None]:
    engine = sa.create_engine(f"sqlite:///{home / 'reflow.db'}")
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, error_message FROM sync_runs WHERE id = :id"), {"id": run_id}
        ).one()
    engine.dispose()
    return row[0], row[1]


def test_sigterm_mid_run_marks_the_run_failed(
    pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    # A slow model: the source yields a row every 20 ms, in batches of 10.
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".dst (id int PRIMARY KEY)')
    home = Path(tempfile.mkdtemp(prefix="reflow-shutdown-"))
    server = start_server("sqlite", home, {"REFLOW_BATCH_SIZE": "10"})
    try:
        with server.client() as api:
            creds = pg_credentials(pg_database)
            source = api.post("/sources", json={"connection": {
                "type": "postgres", "credentials": creds}}).json()["data"]
            model = api.post(f"/sources/{source['id']}/models", json={
                "name": "slow",
                "query": "SELECT g AS id FROM generate_series(1, 2000) g, LATERAL pg_sleep(0.02)",
            }).json()["data"]
            dest = api.post("/destinations", json={"service_connection": {
                "type": "postgres", "credentials": creds}}).json()["data"]
            sync = api.post("/syncs", json={
                "operation": "upsert",
                "source_attributes": {"connection_id": source["id"],
                                      "object": {"type": "model", "id": model["id"]}},
                "destination_attributes": {"connection_id": dest["id"],
                                           "object": f"{pg_schema}.dst"},
                "mappings": [{"from": {"type": "column", "data": "id"}, "to": "id",
                              "is_primary_identifier": True}],
            }).json()["data"]
            run_id = api.post(f"/syncs/{sync['sync_id']}/trigger").json()["data"]["sync_run_id"]
            deadline = time.monotonic() + 30
            run = api.get(f"/sync_runs/{run_id}").json()["data"]
            while run["status"] == "queued":
                assert time.monotonic() < deadline, "run never started"
                time.sleep(0.1)
                run = api.get(f"/sync_runs/{run_id}").json()["data"]
            assert run["status"] == "working", run
    finally:
        code = stop_server(server)
    # uvicorn re-raises the signal after a graceful shutdown, so -15 is a clean exit too.
    assert code in (0, -15), server.log()
    assert "Traceback" not in server.log(), server.log()
    status, message = _run_status(home, run_id)
    assert status == "failed"
    assert message and "shutdown" in message


def test_init_twice_refuses_and_changes_nothing() -> None:
    home = tempfile.mkdtemp(prefix="reflow-init-")
    env = {"REFLOW_HOME": home, "PATH": "/usr/bin:/bin"}

    def init() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reflow.cli", "init", "--json"],
                              env=env, capture_output=True, text=True, timeout=120)

    first = init()
    assert first.returncode == 0, first.stderr
    tokens = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(tokens) == {"organization_id", "organization_token", "workspace_id",
                           "workspace_token"}
    assert tokens["workspace_token"].startswith("secret-token:")
    key = Path(home, "secret.key")
    assert key.stat().st_mode & 0o777 == 0o600
    before = Path(home, "reflow.db").read_bytes()
    second = init()
    assert second.returncode == 1
    assert "already initialized" in second.stderr
    assert Path(home, "reflow.db").read_bytes() == before
    # the token is stored hashed, never in clear
    assert tokens["workspace_token"].encode() not in before
    assert tokens["workspace_token"].removeprefix("secret-token:").encode() not in before
