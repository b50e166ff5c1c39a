"""A token revoked from another process stops working in every API process of
``reflow serve --workers 2`` once ``CACHE_SECONDS`` have passed (services/auth.py
remembers a good token that long per process; processes share no memory). Revoked
by this test's process through the service ``reflow token revoke`` uses (the command
itself takes longer to start than the cache keeps a token), on SQLite and on
PostgreSQL state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reflow.config import Settings
from reflow.runtime import Runtime
from reflow.services import tokens
from reflow.services.auth import CACHE_SECONDS
from tests.api.conftest import _reflow, _wait_healthy, free_port
from tests.conftest import create_pg_database, drop_pg_database


def _statuses(base: str, token: str, n: int = 20) -> list[int]:
    """``n`` requests, each on a new connection: either process may answer each."""
    out = []
    for _ in range(n):
        with httpx.Client(base_url=base, timeout=30) as client:
            response = client.get("/api/v1/syncs", headers={"Authorization": f"Bearer {token}"})
            out.append(response.status_code)
    return out


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_token_revoked_elsewhere_stops_working_in_every_worker(
    tmp_path: Path, store: str
) -> None:
    env = {**os.environ, "REFLOW_HOME": str(tmp_path), "REFLOW_SECRET_KEY": "k",
           "REFLOW_LOG_LEVEL": "WARNING"}
    env.pop("REFLOW_DATABASE_URL", None)
    database = create_pg_database() if store == "postgres" else None
    if database:
        env["REFLOW_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
    process = None
    try:
        init = _reflow("init", "--json", env=env)
        assert init.returncode == 0, init.stderr
        workspace_id = json.loads(init.stdout.strip().splitlines()[-1])["workspace_id"]
        made = _reflow("token", "create", "--workspace", str(workspace_id), "--json", env=env)
        assert made.returncode == 0, made.stderr
        token = json.loads(made.stdout)
        port, log_path = free_port(), tmp_path / "serve.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "reflow.cli", "serve", "--workers", "2", "--port", str(port)],
            env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, process, log_path)

        assert set(_statuses(base, token["token"])) == {200}  # remembered where it was used
        runtime = Runtime.from_settings(Settings(
            home=tmp_path, secret_key="k", database_url=env.get("REFLOW_DATABASE_URL")))
        with runtime.session() as session:
            tokens.revoke(session, token_id=token["id"])
        runtime.engine.dispose()
        time.sleep(CACHE_SECONDS + 0.2)
        assert set(_statuses(base, token["token"])) == {401}
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        if database:
            drop_pg_database(database)
