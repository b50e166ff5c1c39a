"""Secrets never enter a project: export writes placeholders, apply reads the
environment, plan never shows or compares them, --rotate-secrets sends them again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import DemoServer, cli, files
from tests.conftest import create_pg_database, drop_pg_database, pg_credentials

VAR = "REFLOW_WAREHOUSE_PG_PASSWORD"


@pytest.fixture
def pg_database() -> Iterator[str]:
    name = create_pg_database("reflow_project")
    yield name
    drop_pg_database(name)


def test_secret_placeholders_environment_and_rotation(
    demo_server: DemoServer, pg_database: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = demo_server.new_workspace("secrets")
    credentials = pg_credentials(pg_database)  # trust auth: any password connects
    with demo_server.api(token) as api:
        made = api.post("/destinations", json={"service_connection": {
            "type": "postgres", "name": "Warehouse PG", "credentials": credentials}})
        assert made.status_code == 201, made.text
    project = tmp_path / "project"
    assert cli(capsys, demo_server, token, "export", str(project))[0] == 0
    written = files(project)
    assert f"password: ${{{VAR}:-}}" in written["destinations/warehouse-pg.yml"]
    assert not any(credentials["password"] in text for text in written.values())

    monkeypatch.delenv(VAR, raising=False)
    code, out, err = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 2 and "= destination warehouse-pg: adopt" in out, err
    monkeypatch.setenv(VAR, "s3cret-value")
    assert cli(capsys, demo_server, token, "apply", str(project))[0] == 0
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 0, out  # the secret cannot be compared, so it is not

    code, out, err = cli(capsys, demo_server, token, "plan", str(project), "--rotate-secrets")
    assert code == 2
    assert "    credentials.password: '(secret)' -> '(secret) from the project'" in out
    with demo_server.api(token) as api:
        tested = api.get("/destinations").json()["data"][0]["last_tested_at"]
    code, out, err = cli(capsys, demo_server, token, "apply", str(project), "--rotate-secrets")
    assert code == 0, err
    assert "destination warehouse-pg: changed" in out
    assert "s3cret-value" not in out + err
    with demo_server.api(token) as api:
        destination = api.get("/destinations").json()["data"][0]
    assert "password" not in destination["connection_details"]
    # credentials sent in a PATCH are tested again: the secret did go
    assert destination["last_test_succeeded"] is True and destination["last_tested_at"] > tested
