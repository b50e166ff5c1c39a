"""``reflow token``: a lost token is replaced from the command line, on the state store
itself; the new token is printed once and works, a revoked one stops working. The
command runs in-process (``reflow.cli.main``), on the store ``REFLOW_HOME`` names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from reflow import cli
from reflow.config import get_settings
from reflow.db.engine import make_engine
from reflow.errors import Unauthorized
from reflow.jobs import logcontext
from reflow.services.auth import authenticate
from reflow.services.bootstrap import InitResult, initialize


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("REFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("REFLOW_DATABASE_URL", raising=False)
    # main() configures the process's root logger; pytest's capture must keep its own.
    monkeypatch.setattr(logcontext, "configure_logging", lambda *a, **k: None)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _reflow(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _principal(home: Path, token: str) -> tuple[str, int | None]:
    engine = make_engine(f"sqlite:///{home / 'reflow.db'}")
    try:
        with Session(engine) as session:
            principal = authenticate(session, token=token)
            return principal.kind, principal.workspace_id
    finally:
        engine.dispose()


def _init(home: Path) -> InitResult:
    engine = make_engine(f"sqlite:///{home / 'reflow.db'}")
    try:
        return initialize(engine)
    finally:
        engine.dispose()


def test_tokens_are_listed_created_and_revoked(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _init(home)
    code, out, err = _reflow(capsys, "token", "create", "--workspace", str(first.workspace_id),
                             "--json")
    assert code == 0, err
    workspace = json.loads(out)
    assert _principal(home, workspace["token"]) == ("workspace", first.workspace_id)

    code, out, err = _reflow(capsys, "token", "create", "--organization",
                             str(first.organization_id), "--json")
    assert code == 0, err
    org = json.loads(out)
    assert _principal(home, org["token"])[0] == "organization"

    code, listed, err = _reflow(capsys, "token", "list", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in listed.splitlines()]
    assert {r["id"] for r in rows} >= {workspace["id"], org["id"]}
    assert all(r["user"] == "admin@localhost" for r in rows if r["kind"] == "organization")
    for secret in (first.workspace_token, workspace["token"], org["token"]):
        assert secret not in listed

    code, _, err = _reflow(capsys, "token", "revoke", str(workspace["id"]))
    assert code == 0, err
    with pytest.raises(Unauthorized):
        _principal(home, workspace["token"])
    assert _principal(home, first.workspace_token)[0] == "workspace"

    code, _, err = _reflow(capsys, "token", "create", "--workspace", "999")
    assert code == 1 and "workspace 999 not found" in err
