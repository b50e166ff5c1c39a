"""A real ``reflow serve`` seeded with the demo workspace, shared by the session's
config-as-code and run tests; the CLI runs in-process (it is an HTTP client) against
it on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reflow.cli import main
from tests.api.conftest import _reflow, _wait_healthy, free_port


@dataclass
class DemoServer:
    base_url: str
    home: Path
    demo: dict[str, Any]
    process: subprocess.Popen[bytes]

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url + "/api/v1",
                            headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def new_workspace(self, name: str) -> str:
        """An empty workspace of the demo organization; its token."""
        with self.api(self.demo["organization_token"]) as org:
            answer = org.post("/workspaces", json={"name": name, "return_workspace_api_key": True})
        assert answer.status_code == 201, answer.text
        return answer.json()["data"]["api_key"]


@pytest.fixture(scope="session")
def demo_server() -> Iterator[DemoServer]:
    home = Path(tempfile.mkdtemp(prefix="reflow-project-"))
    env = {**os.environ, "REFLOW_HOME": str(home), "REFLOW_LOG_LEVEL": "WARNING"}
    env.pop("REFLOW_DATABASE_URL", None)
    seeded = _reflow("demo", "--json", "--customers", "200", env=env)
    assert seeded.returncode == 0, seeded.stderr
    demo = json.loads(seeded.stdout.strip().splitlines()[-1])
    port, log = free_port(), home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "reflow.cli", "serve", "--port", str(port)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, log)
        yield DemoServer(base, home, demo, process)
    finally:
        process.terminate()
        process.wait(timeout=60)


def cli(capsys: pytest.CaptureFixture[str], server: DemoServer, token: str,
        *args: str) -> tuple[int, str, str]:
    """``reflow <args> --url ... --token ...`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([*args, "--url", server.base_url, "--token", token])
    out, err = capsys.readouterr()
    return code, out, err


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def state(server: DemoServer, token: str) -> dict[str, Any]:
    """Everything plan could touch, as the API shows it (timestamps included)."""
    with server.api(token) as api:
        out = {path: api.get(path, params={"per_page": 100}).json()["data"]
               for path in ("/sources", "/destinations", "/syncs", "/managed_objects")}
        out["models"] = [api.get(f"/sources/{s['id']}/models").json()["data"]
                         for s in out["/sources"]]
    return out
