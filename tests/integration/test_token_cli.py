"""``reflow token``: a lost token is replaced from the command line, on the state store
itself; the new token is printed once and works, a revoked one stops working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from reflow.db.engine import make_engine
from reflow.errors import Unauthorized
from reflow.services.auth import authenticate


def _reflow(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REFLOW_HOME": str(home), "REFLOW_LOG_LEVEL": "WARNING"}
    env.pop("REFLOW_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "reflow.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _principal(home: Path, token: str) -> tuple[str, int | None]:
    engine = make_engine(f"sqlite:///{home / 'reflow.db'}")
    try:
        with Session(engine) as session:
            principal = authenticate(session, token=token)
            return principal.kind, principal.workspace_id
    finally:
        engine.dispose()


def test_tokens_are_listed_created_and_revoked(tmp_path: Path) -> None:
    init = _reflow(tmp_path, "init", "--json")
    assert init.returncode == 0, init.stderr
    first = json.loads(init.stdout.strip().splitlines()[-1])
    assert list(tmp_path.glob("*.db")), "the embedded store lives under REFLOW_HOME"

    created = _reflow(tmp_path, "token", "create", "--workspace", str(first["workspace_id"]),
                      "--json")
    assert created.returncode == 0, created.stderr
    workspace = json.loads(created.stdout)
    assert _principal(tmp_path, workspace["token"]) == ("workspace", first["workspace_id"])

    org = _reflow(tmp_path, "token", "create", "--organization", str(first["organization_id"]),
                  "--json")
    assert org.returncode == 0, org.stderr
    assert _principal(tmp_path, json.loads(org.stdout)["token"])[0] == "organization"

    listed = _reflow(tmp_path, "token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["id"] for r in rows} >= {workspace["id"], json.loads(org.stdout)["id"]}
    assert all(r["user"] == "admin@localhost" for r in rows if r["kind"] == "organization")
    for secret in (first["workspace_token"], workspace["token"], json.loads(org.stdout)["token"]):
        assert secret not in listed.stdout

    revoked = _reflow(tmp_path, "token", "revoke", str(workspace["id"]))
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(Unauthorized):
        _principal(tmp_path, workspace["token"])
    assert _principal(tmp_path, first["workspace_token"])[0] == "workspace"

    missing = _reflow(tmp_path, "token", "create", "--workspace", "999")
    assert missing.returncode == 1 and "workspace 999 not found" in missing.stderr
