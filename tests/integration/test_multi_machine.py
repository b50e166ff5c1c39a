"""Two Celery workers that share nothing on disk: a PostgreSQL state store, a Redis broker,
moto S3 as ``REFLOW_STORAGE_URL``, and a ``REFLOW_HOME`` of their own each. Engine-side
syncs (a SQLite warehouse into PostgreSQL, upsert and mirror) run with their runs landing
on one worker, then the other: after every run the destination is exact and the next
no-change run sends 0 records, whichever worker ran the last one. A worker killed with
SIGKILL mid-run leaves the previous snapshot in place; the next run, on the other worker,
completes exactly."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest

from reflow.config import Settings
from reflow.jobs.celery_app import make_celery
from tests.api.conftest import Server, start_server, stop_server, wait_for_run
from tests.conftest import (
    create_pg_database,
    drop_pg_database,
    pg_credentials,
    require_service,
    unique_name,
)
from tests.integration.test_celery import poll
from tests.support.emulators import moto_s3_endpoint

ROWS = 40


@dataclass
class Machines:
    server: Server
    env: dict[str, str]
    root: Path
    bucket: str
    s3: Any
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    scheduler: subprocess.Popen[bytes] | None = None

    def start(self, name: str) -> None:
        """A worker on its own 'machine': a REFLOW_HOME nobody else uses."""
        home = self.root / name
        home.mkdir(exist_ok=True)
        log = home / "worker.log"
        env = {**self.env, "REFLOW_HOME": str(home), "REFLOW_LOG_LEVEL": "INFO"}
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "reflow.cli", "worker", "--concurrency", "1"],
            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        poll(f"{name} ready", lambda: "ready" in log.read_text(errors="replace"), 60)

    def stop(self, name: str, *, kill: bool = False) -> None:
        process = self.workers.pop(name)
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=60)

    def ran(self, name: str, run_id: int) -> bool:
        log = (self.root / name / "worker.log").read_text(errors="replace")
        return f"run_id={run_id}: run received" in log

    def snapshot_keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="reflow/snapshots/")
        return [item["Key"] for item in listing.get("Contents", [])]


@pytest.fixture
def machines() -> Iterator[Machines]:
    require_service("Redis", 6379)
    require_service("PostgreSQL", 5432)
    state_db = create_pg_database("reflow_multi_state")
    root = Path(tempfile.mkdtemp(prefix="reflow-multi-"))
    queue = unique_name("reflow_multi")
    with moto_s3_endpoint() as endpoint:
        aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        bucket = unique_name("runs").replace("_", "-")
        s3.create_bucket(Bucket=bucket)
        extra = {
            **aws,
            "REFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{state_db}",
            "REFLOW_SECRET_KEY": "multi-machine-test-key-0123456789abcdef",
            "REFLOW_STORAGE_URL": f"s3://{bucket}/reflow",
            "REFLOW_EXECUTOR": "celery", "REFLOW_BROKER_URL": "redis://127.0.0.1:6379/0",
            "REFLOW_CELERY_QUEUE": queue, "REFLOW_BATCH_SIZE": "10",
            "REFLOW_HEARTBEAT_INTERVAL": "1", "REFLOW_HEARTBEAT_TIMEOUT": "6",
            "REFLOW_SCHEDULER_INTERVAL": "1", "REFLOW_REQUEUE_AFTER": "8",
        }
        (root / "api").mkdir()
        server = start_server("postgres", root / "api", extra)
        m = Machines(server, server.env, root, bucket, s3)
        try:
            scheduler_log = root / "api" / "scheduler.log"
            m.scheduler = subprocess.Popen(
                [sys.executable, "-m", "reflow.cli", "scheduler"], env=m.env,
                stdout=scheduler_log.open("wb"), stderr=subprocess.STDOUT)
            yield m
        finally:
            for process in [*m.workers.values(), m.scheduler]:
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
            stop_server(server)
            app = make_celery(Settings(broker_url=extra["REFLOW_BROKER_URL"], celery_queue=queue))
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
            drop_pg_database(state_db)


def _warehouse(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, score INTEGER)")
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                     [(i, f"u{i}@x.io", i) for i in range(1, ROWS + 1)])
    return conn


def _sync(api: httpx.Client, source: int, dest: int, table: str, operation: str) -> int:
    model = api.post(f"/sources/{source}/models", json={
        "name": f"customers {operation}", "query": "SELECT * FROM customers"}).json()["data"]["id"]
    response = api.post("/syncs", json={
        "operation": operation,
        "source_attributes": {"connection_id": source, "object": {"type": "model", "id": model}},
        "destination_attributes": {"connection_id": dest, "object": table},
        "mappings": [{"from": {"type": "column", "data": c}, "to": c,
                      "is_primary_identifier": c == "id"} for c in ("id", "email", "score")],
    })
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["sync_id"])


def _run(api: httpx.Client, sync_id: int) -> dict[str, Any]:
    response = api.post(f"/syncs/{sync_id}/trigger")
    assert response.status_code == 200, response.text
    return wait_for_run(api, int(response.json()["data"]["sync_run_id"]), timeout=120)


def _sent(run: dict[str, Any]) -> int:
    """Records the diff found to send: changed rows plus, for mirror, removed keys."""
    return int(run["source_record_updates"] or 0) + int(run["source_record_deletes"] or 0)


def _nothing_to_send(api: httpx.Client, machines: Machines, worker: str, sync_id: int) -> None:
    run = _run(api, sync_id)
    assert run["status"] == "completed" and machines.ran(worker, run["id"]), run
    assert _sent(run) == 0 and run["records_processed"] == 0, run


def test_snapshots_travel_between_workers_without_a_shared_disk(
    machines: Machines, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    warehouse = _warehouse(machines.root / "warehouse.sqlite")
    for table in ("upserted", "mirrored"):
        pg_conn.execute(f'CREATE TABLE "{pg_schema}".{table}'
                        " (id bigint PRIMARY KEY, email text, score int)")

    def exact(table: str) -> bool:
        """mirrored equals the source; upserted holds every source row as it is (rows
        deleted from the source stay, as upsert never deletes)."""
        src = [tuple(r) for r in warehouse.execute(
            "SELECT id, email, score FROM customers ORDER BY id")]
        dst = [tuple(r) for r in pg_conn.execute(
            f'SELECT id, email, score FROM "{pg_schema}".{table} ORDER BY id')]
        if table == "upserted":
            ids = {r[0] for r in src}
            dst = [r for r in dst if r[0] in ids]
        return src == dst

    with machines.server.client() as api:
        source = api.post("/sources", json={"connection": {
            "type": "sqlite", "name": "Warehouse",
            "credentials": {"path": str(machines.root / "warehouse.sqlite")}}}).json()["data"]["id"]
        dest = api.post("/destinations", json={"service_connection": {
            "type": "postgres", "name": "Ops", "credentials": pg_credentials(pg_database)}}
        ).json()["data"]["id"]
        syncs = {op: _sync(api, source, dest, f"{pg_schema}.{table}", op)
                 for op, table in (("upsert", "upserted"), ("mirror", "mirrored"))}
        tables = {"upsert": "upserted", "mirror": "mirrored"}

        # Each step runs on the one worker that is up, and the workers alternate: a run
        # on one first finds nothing to send after the other's run, then sends a change.
        steps = [
            (None, ROWS),
            ("UPDATE customers SET score = score + 100 WHERE id <= 3", 3),
            ("DELETE FROM customers WHERE id IN (5, 6)", 2),
            (f"INSERT INTO customers VALUES ({ROWS + 1}, 'new@x.io', 0)", 1),
        ]
        worker = "b"
        for i, (change, changed) in enumerate(steps):
            if i:
                machines.stop(worker)
            worker = "a" if worker == "b" else "b"
            machines.start(worker)
            for sync_id in syncs.values() if i else ():
                _nothing_to_send(api, machines, worker, sync_id)
            if change:
                warehouse.execute(change)
            for op, sync_id in syncs.items():
                run = _run(api, sync_id)
                assert run["status"] == "completed" and machines.ran(worker, run["id"]), run
                assert exact(tables[op]), (worker, op, change)
                # upsert does not delete: a removed row is no change for it
                want = 0 if op == "upsert" and "DELETE" in (change or "") else changed
                assert _sent(run) == want, (worker, op, change, run)
        machines.stop(worker)
        assert sorted(machines.snapshot_keys()) == sorted(
            f"reflow/snapshots/sync_{s}.duckdb" for s in syncs.values())

        # --- a worker killed mid-run; the next run on the other worker is exact -------
        pg_conn.execute(f"""CREATE FUNCTION "{pg_schema}".slow() RETURNS trigger
                            LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.1);
                            RETURN NEW; END $$""")
        pg_conn.execute(f'CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON "{pg_schema}".mirrored'
                        f' FOR EACH ROW EXECUTE FUNCTION "{pg_schema}".slow()')
        warehouse.execute("UPDATE customers SET score = -1")
        warehouse.execute("DELETE FROM customers WHERE id = 1")
        machines.start("a")
        victim = api.post(f"/syncs/{syncs['mirror']}/trigger").json()["data"]["sync_run_id"]
        poll("the first batches to arrive", lambda: pg_conn.execute(
            f'SELECT count(*) FROM "{pg_schema}".mirrored WHERE score = -1').fetchone()[0] >= 10)
        machines.stop("a", kill=True)
        lost = wait_for_run(api, victim, timeout=120)
        assert lost["status"] == "failed" and lost["error_code"] == "WORKER_LOST", lost
        pg_conn.execute(f'DROP TRIGGER slow ON "{pg_schema}".mirrored')
        machines.start("b")
        final = _run(api, syncs["mirror"])
        assert final["status"] == "completed" and machines.ran("b", final["id"]), final
        assert exact("mirrored")
        _nothing_to_send(api, machines, "b", syncs["mirror"])
        machines.stop("b")
