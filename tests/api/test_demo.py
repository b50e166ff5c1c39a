"""``reflow demo`` on a fresh embedded default: seed, serve, trigger, change one
warehouse row, trigger again and see exactly that record sent."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.api.conftest import _reflow, _wait_healthy, free_port, wait_for_run


def _crm(path: str) -> dict[int, tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, email, plan FROM customers").fetchall()
    conn.close()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_demo_seeds_a_workspace_whose_sync_runs() -> None:
    home = Path(tempfile.mkdtemp(prefix="reflow-demo-"))
    env = {**os.environ, "REFLOW_HOME": str(home), "REFLOW_LOG_LEVEL": "WARNING"}
    env.pop("REFLOW_DATABASE_URL", None)
    seeded = _reflow("demo", "--json", "--customers", "3000", env=env)
    assert seeded.returncode == 0, seeded.stderr
    demo = json.loads(seeded.stdout.strip().splitlines()[-1])
    assert demo["organization_token"]  # the store was empty: demo initialized it
    human = _reflow("demo", "--customers", "10", "--base-url", "http://h:1", env=env)
    assert human.returncode == 0, human.stderr
    assert "curl -X POST" in human.stdout and "http://h:1/api/v1/syncs/" in human.stdout

    port = free_port()
    log = home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "reflow.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, process, log)
        headers = {"Authorization": f"Bearer {demo['workspace_token']}"}
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=60) as api:
            destination = api.get(f"/destinations/{demo['destination_id']}").json()["data"]
            assert [o["full_name"] for o in destination["objects"]] == ["customers"]

            first = api.post(f"/syncs/{demo['sync_id']}/trigger")
            assert first.status_code == 200, first.text
            run = wait_for_run(api, first.json()["data"]["sync_run_id"])
            assert run["status"] == "completed", run["error_message"]
            assert run["records_processed"] == 3000 and run["records_failed"] == 0
            crm = _crm(demo["crm_path"])
            assert len(crm) == 3000 and crm[42][0] == "customer42@example.com"

            with sqlite3.connect(demo["warehouse_path"]) as conn:
                conn.execute("UPDATE customers SET plan = 'changed-plan' WHERE id = 42")
            conn.close()
            second = api.post(f"/syncs/{demo['sync_id']}/trigger")
            run = wait_for_run(api, second.json()["data"]["sync_run_id"])
            assert run["status"] == "completed", run["error_message"]
            assert run["records_processed"] == 1
            assert run["records_updated"] == 1
            assert _crm(demo["crm_path"])[42][1] == "changed-plan"
    finally:
        process.terminate()
        process.wait(timeout=60)
