"""``reflow serve --workers 2`` on the embedded default: two API processes, and the
scheduler and the local executor running once, in the parent process.

The API processes leave the runs they trigger queued; the parent's executor watches
for queued runs. A run committed as queued without being handed to any executor (what
an API process does) is run by that watch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from reflow.config import Settings
from reflow.db.tables import Sync
from reflow.runtime import Runtime
from reflow.services import runs
from tests.api.conftest import _reflow, _wait_healthy, free_port


def _wait_for(predicate: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _status(api: httpx.Client, run_id: int) -> str:
    return str(api.get(f"/sync_runs/{run_id}").json()["data"]["status"])


def test_two_workers_serve_while_the_scheduler_and_runs_run_once(tmp_path: Path) -> None:
    env = {**os.environ, "REFLOW_HOME": str(tmp_path), "REFLOW_SECRET_KEY": "k",
           "REFLOW_LOG_LEVEL": "INFO", "REFLOW_SCHEDULER_INTERVAL": "0.2"}
    env.pop("REFLOW_DATABASE_URL", None)
    seeded = _reflow("demo", "--customers", "50", "--json", env=env)
    assert seeded.returncode == 0, seeded.stderr
    demo = json.loads(seeded.stdout.strip().splitlines()[-1])
    port, log_path = free_port(), tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "reflow.cli", "serve", "--workers", "2", "--port", str(port)],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, log_path)
        _wait_for(lambda: log_path.read_text().count("API only") == 2
                  and log_path.read_text().count("Application startup complete") == 2,
                  "both workers to start")
        headers = {"Authorization": f"Bearer {demo['workspace_token']}"}
        run_ids = []
        for _ in range(3):  # a new connection each: either process may answer
            with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=30) as api:
                run_id = api.post(f"/syncs/{demo['sync_id']}/trigger").json()["data"][
                    "sync_run_id"]
                _wait_for(lambda a=api, r=run_id: _status(a, r) == "completed", f"run {run_id}")
                run_ids.append(run_id)

        # Queued and handed to no executor, as the API-only process leaves a run.
        runtime = Runtime.from_settings(Settings(home=tmp_path, secret_key="k"))
        with runtime.session() as session:
            sync = session.get(Sync, demo["sync_id"])
            assert sync is not None
            left = runs.trigger(session, sync=sync).id
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=30) as api:
            _wait_for(lambda: _status(api, left) == "completed", "the queued run")
            statuses = [_status(api, r) for r in (*run_ids, left)]
        assert statuses == ["completed"] * 4

        log = log_path.read_text()
        assert log.count("scheduler and sync runs; 2 API workers") == 1, log
        assert log.count("API only") == 2, log
        assert log.count("scheduler started") == 1, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
