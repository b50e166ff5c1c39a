"""A real ``reflow serve`` process per state store (SQLite and PostgreSQL), shared by
the session; tests talk to it over HTTP on loopback like any Census client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import create_pg_database, drop_pg_database, require_service

STORES = ("sqlite", "postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    store: str
    base_url: str
    env: dict[str, str]
    workspace_token: str
    organization_token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.workspace_token}"}
        return httpx.Client(base_url=self.base_url + "/api/v1", headers=headers, timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _reflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflow.cli", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )


def start_server(store: str, home: Path, extra_env: dict[str, str] | None = None) -> Server:
    env = {**os.environ, "REFLOW_HOME": str(home), "REFLOW_LOG_LEVEL": "WARNING"}
    env.pop("REFLOW_DATABASE_URL", None)
    env.update(extra_env or {})
    init = _reflow("init", "--json", env=env)
    assert init.returncode == 0, init.stderr
    tokens = json.loads(init.stdout.strip().splitlines()[-1])
    port = free_port()
    log_path = home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "reflow.cli", "serve", "--port", str(port)],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    _wait_healthy(base_url, process, log_path)
    return Server(store, base_url, env, tokens["workspace_token"], tokens["organization_token"],
                  process, log_path)


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"reflow serve exited:\n{log_path.read_text()}")
        try:
            if httpx.get(base_url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"reflow serve did not become healthy:\n{log_path.read_text()}")


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.send_signal(signal.SIGUSR1)  # every thread's stack into the log
        time.sleep(2)
        server.process.kill()
        raise AssertionError(
            f"reflow serve did not stop within 60 s of SIGTERM:\n{server.log()[-20000:]}"
        ) from None


@pytest.fixture(scope="session", params=STORES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with own_server(request.param) as srv:
        yield srv


@contextmanager
def own_server(store: str) -> Iterator[Server]:
    """A ``reflow serve`` on ``store`` with a fresh home (and state database)."""
    home = Path(tempfile.mkdtemp(prefix=f"reflow-{store}-"))
    extra: dict[str, str] = {}
    state_db = None
    if store == "postgres":
        require_service("PostgreSQL", 5432)
        state_db = create_pg_database("reflow_state")
        extra["REFLOW_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{state_db}"
    srv = start_server(store, home, extra)
    try:
        yield srv
    finally:
        stop_server(srv)
        if state_db:
            drop_pg_database(state_db)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def wait_for_run(api: httpx.Client, run_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/sync_runs/{run_id}").json()["data"]
        if run["status"] in ("completed", "failed", "skipped"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {run}")
