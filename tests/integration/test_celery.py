"""Production layout on one machine: `reflow serve` (API only), two `reflow worker`
processes and one `reflow scheduler`, PostgreSQL state, Redis or RabbitMQ broker.

Ten Postgres->Postgres syncs, thirty triggers (each message sent twice, as a broker
redelivery would): every run completes exactly once, runs of one sync never overlap,
destinations are exact. Then a worker is SIGKILLed in the middle of a slow run: the
scheduler's reaper fails the run, the next run leaves the destination exact. A lost
broker message is re-sent from the database, cancel reaches a run in another process,
and a SIGTERM lets a worker shut down warmly."""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from reflow.config import Settings
from reflow.jobs.celery_app import TASK_NAME, make_celery
from tests.api.conftest import Server, start_server, stop_server, wait_for_run
from tests.conftest import (
    create_pg_database,
    drop_pg_database,
    pg_credentials,
    require_service,
    unique_name,
)

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/0", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}
SYNCS, ROWS, WAVES = 10, 20, 3
DEADLINE = 120.0


@dataclass
class Cluster:
    server: Server
    env: dict[str, str]
    state_dsn: str
    home: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.home / f"{name}.log"
        env = {**self.env, "REFLOW_LOG_LEVEL": "INFO"}
        process = subprocess.Popen([sys.executable, "-m", "reflow.cli", *args], env=env,
                                   stdout=log.open("wb"), stderr=subprocess.STDOUT)
        return process, log

    def state(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.state_dsn, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.worker_logs)


def poll(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=sorted(BROKERS))
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    url, port = BROKERS[request.param]
    require_service(request.param, port)
    require_service("PostgreSQL", 5432)
    state_db = create_pg_database("reflow_celery_state")
    home = Path(tempfile.mkdtemp(prefix=f"reflow-celery-{request.param}-"))
    queue = unique_name("reflow_test")
    extra = {
        "REFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{state_db}",
        "REFLOW_EXECUTOR": "celery", "REFLOW_BROKER_URL": url, "REFLOW_CELERY_QUEUE": queue,
        "REFLOW_BATCH_SIZE": "5", "REFLOW_HEARTBEAT_INTERVAL": "1",
        "REFLOW_HEARTBEAT_TIMEOUT": "6", "REFLOW_SCHEDULER_INTERVAL": "1",
        "REFLOW_REQUEUE_AFTER": "8",
    }
    server = start_server("postgres", home, extra)
    c = Cluster(server, server.env, extra["REFLOW_DATABASE_URL"], home)
    try:
        for i in range(2):
            process, log = c.spawn(f"worker{i}", "worker", "--concurrency", "2")
            c.workers.append(process)
            c.worker_logs.append(log)
        c.others.append(c.spawn("scheduler", "scheduler")[0])
        for i, log in enumerate(c.worker_logs):
            poll(f"worker {i} ready",
                 lambda log=log: "ready" in log.read_text(errors="replace"), 60)
        yield c
    finally:
        for process in [*c.workers, *c.others]:
            if process.poll() is None:
                process.kill()
                process.wait()
        stop_server(server)
        app = make_celery(Settings(broker_url=url, celery_queue=queue))
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        drop_pg_database(state_db)


def _seed(conn: psycopg.Connection, schema: str, i: int) -> None:
    conn.execute(f'CREATE TABLE "{schema}".src_{i} (id int, email text, score int)')
    conn.execute(f"""INSERT INTO "{schema}".src_{i}
                     SELECT g, 'u' || g || '@x.io', g FROM generate_series(1, {ROWS}) g""")
    conn.execute(f'CREATE TABLE "{schema}".dst_{i} (id bigint PRIMARY KEY, email text, score int)')


def _create_syncs(api: httpx.Client, database: str, schema: str, n: int) -> list[int]:
    creds = pg_credentials(database)
    source = api.post("/sources", json={"connection": {
        "type": "postgres", "name": "Warehouse", "credentials": creds}}).json()["data"]["id"]
    dest = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "name": "Ops DB", "credentials": creds}}).json()["data"]["id"]
    sync_ids = []
    for i in range(n):
        model = api.post(f"/sources/{source}/models", json={
            "name": f"m{i}", "query": f'SELECT * FROM "{schema}".src_{i}'}).json()["data"]["id"]
        sync = api.post("/syncs", json={
            "operation": "upsert",
            "source_attributes": {"connection_id": source,
                                  "object": {"type": "model", "id": model}},
            "destination_attributes": {"connection_id": dest, "object": f"{schema}.dst_{i}"},
            "mappings": [
                {"from": {"type": "column", "data": "id"}, "to": "id",
                 "is_primary_identifier": True},
                {"from": {"type": "column", "data": "email"}, "to": "email"},
                {"from": {"type": "column", "data": "score"}, "to": "score"},
            ],
        })
        assert sync.status_code == 200, sync.text
        sync_ids.append(sync.json()["data"]["sync_id"])
    return sync_ids


def _exact(conn: psycopg.Connection, schema: str, i: int) -> bool:
    src = conn.execute(f'SELECT id, email, score FROM "{schema}".src_{i} ORDER BY id').fetchall()
    dst = conn.execute(f'SELECT id, email, score FROM "{schema}".dst_{i} ORDER BY id').fetchall()
    return src == dst


def _trigger(api: httpx.Client, sync_id: int, **body: Any) -> int:
    response = api.post(f"/syncs/{sync_id}/trigger", json=body or None)
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["sync_run_id"])


def _claims(logs: str, run_id: int) -> int:
    """Deliveries of a run that did work: received minus the ones the claim turned away."""
    received = len(re.findall(rf"run_id={run_id}: run received", logs))
    turned_away = len(re.findall(rf"run {run_id} was not queued any more", logs))
    return received - turned_away


def _assert_no_overlap(cluster: Cluster, sync_ids: list[int]) -> None:
    for sync_id in sync_ids:
        spans = cluster.state(
            "SELECT started_at, completed_at FROM sync_runs WHERE sync_id = %s"
            " AND started_at IS NOT NULL ORDER BY started_at", sync_id)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, f"runs of sync {sync_id} overlap"


def test_workers_run_every_run_once_and_survive_a_lost_worker(
    cluster: Cluster, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    for i in range(SYNCS + 1):
        _seed(pg_conn, pg_schema, i)
    sender = make_celery(Settings(broker_url=cluster.env["REFLOW_BROKER_URL"],
                                  celery_queue=cluster.env["REFLOW_CELERY_QUEUE"]))
    with cluster.server.client() as api:
        sync_ids = _create_syncs(api, pg_database, pg_schema, SYNCS + 1)
        syncs, slow_sync = sync_ids[:SYNCS], sync_ids[SYNCS]

        # One run first: the in-warehouse diff creates its shared bookkeeping tables on
        # first use, and concurrent first runs race on CREATE TABLE IF NOT EXISTS
        # (reported separately; not what this test is about).
        assert wait_for_run(api, _trigger(api, slow_sync))["status"] == "completed"

        # --- 30 triggers in three waves, every message delivered twice -----------------
        run_ids: list[int] = []
        for wave in range(WAVES):
            wave_ids = [_trigger(api, s) for s in syncs]
            for run_id in wave_ids:
                sender.send_task(TASK_NAME, args=[run_id], queue=cluster.env["REFLOW_CELERY_QUEUE"])
            runs = [wait_for_run(api, r, timeout=DEADLINE) for r in wave_ids]
            assert [r["status"] for r in runs] == ["completed"] * SYNCS, runs
            assert all(_exact(pg_conn, pg_schema, i) for i in range(SYNCS)), f"wave {wave}"
            run_ids += wave_ids
            for i in range(SYNCS):
                pg_conn.execute(f'UPDATE "{pg_schema}".src_{i} SET score = score + 1'
                                f" WHERE id <= {wave + 2}")
                pg_conn.execute(f"INSERT INTO \"{pg_schema}\".src_{i} VALUES"
                                f" ({100 + wave}, 'new@x.io', 0)")
        poll("duplicate deliveries to be turned away", lambda: all(
            len(re.findall(rf"run_id={r}: run received", cluster.logs())) >= 2 for r in run_ids))
        logs = cluster.logs()
        assert [_claims(logs, r) for r in run_ids] == [1] * len(run_ids)
        assert re.search(rf"sync_id={syncs[0]} run_id={run_ids[0]}: ", logs)

        # --- three triggers of one sync at once: never two runs working together ------
        burst: list[int] = []
        threads = [threading.Thread(target=lambda: burst.append(_trigger(api, syncs[0])))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = [wait_for_run(api, r)["status"] for r in burst]
        assert "completed" in statuses and set(statuses) <= {"completed", "skipped"}
        _assert_no_overlap(cluster, syncs)

        # --- a worker dies mid-run --------------------------------------------------------
        _make_slow(pg_conn, pg_schema, SYNCS)  # 60 rows, batches of 5, 50 ms a row
        pg_conn.execute(f'INSERT INTO "{pg_schema}".src_{SYNCS}'
                        f" SELECT g, 'u' || g || '@x.io', g FROM generate_series({ROWS + 1}, 60) g")
        victim_run = _trigger(api, slow_sync)
        victim = poll("a worker to take the slow run", lambda: _worker_of(cluster, victim_run)) - 1
        poll("the first batches to arrive", lambda: pg_conn.execute(
            f'SELECT count(*) FROM "{pg_schema}".dst_{SYNCS}').fetchone()[0] >= 5)
        cluster.workers[victim].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        cluster.workers[victim].wait()
        lost = wait_for_run(api, victim_run, timeout=DEADLINE)
        detected_after = time.monotonic() - killed_at
        assert lost["status"] == "failed" and lost["error_code"] == "WORKER_LOST", lost
        delivered = pg_conn.execute(f'SELECT count(*) FROM "{pg_schema}".dst_{SYNCS}').fetchone()[0]
        assert 0 < delivered < 60
        print(f"\nlost worker detected after {detected_after:.1f}s (heartbeat timeout 6s)")

        # --- cancel reaches a run working in another process ------------------------------
        to_cancel = _trigger(api, slow_sync, force_full_sync=True)
        poll("the run to work", lambda: api.get(f"/sync_runs/{to_cancel}").json()["data"]
             ["status"] == "working")
        assert api.post(f"/sync_runs/{to_cancel}/cancel").status_code == 200
        canceled = wait_for_run(api, to_cancel)
        assert canceled["status"] == "failed" and canceled["canceled"] is True, canceled

        # --- the next run leaves the destination exact ------------------------------------
        pg_conn.execute(f'DROP TRIGGER slow ON "{pg_schema}".dst_{SYNCS}')
        final = wait_for_run(api, _trigger(api, slow_sync))
        assert final["status"] == "completed", final
        assert _exact(pg_conn, pg_schema, SYNCS)

        # --- a broker message lost: the scheduler re-sends from the database --------------
        orphan = _queued_without_message(cluster, syncs[1])
        assert wait_for_run(api, orphan)["status"] == "completed"
        assert _exact(pg_conn, pg_schema, 1)

        metrics = httpx.get(cluster.server.base_url + "/metrics").text
        completed = re.search(r'reflow_sync_runs\{status="completed"\} (\S+)', metrics)
        assert completed is not None and float(completed.group(1)) >= 30 + 4

    # --- warm shutdown of the surviving worker ------------------------------------------------
    survivor = cluster.workers[1 - victim]
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=60) == 0


def _worker_of(cluster: Cluster, run_id: int) -> int | None:
    """1 + the index of the worker that received ``run_id``, or None."""
    for i, log in enumerate(cluster.worker_logs):
        if f"run_id={run_id}: run received" in log.read_text(errors="replace"):
            return i + 1
    return None


def _make_slow(conn: psycopg.Connection, schema: str, i: int) -> None:
    conn.execute(f"""CREATE FUNCTION "{schema}".slow() RETURNS trigger LANGUAGE plpgsql
                     AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$""")
    conn.execute(f'CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON "{schema}".dst_{i}'
                 f' FOR EACH ROW EXECUTE FUNCTION "{schema}".slow()')


def _queued_without_message(cluster: Cluster, sync_id: int) -> int:
    """A queued run whose broker message never existed (as after a broker restart)."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    rows = cluster.state(
        "INSERT INTO sync_runs (workspace_id, sync_id, status, full_sync, force_full_sync,"
        " canceled, cancel_requested, created_at, updated_at, sync_trigger_reason)"
        " SELECT workspace_id, id, 'queued', false, false, false, false, %s, %s,"
        " '{\"ui_tag\": \"API\"}'::jsonb FROM syncs WHERE id = %s RETURNING id",
        old, old, sync_id)
    return int(rows[0][0])
