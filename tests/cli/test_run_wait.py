"""``reflow run SYNC --wait`` against a real server: a progress line with records read,
sent and rejected; exit 0 on success, 3 past ``--max-rejected``, 1 when the run
fails; ``reflow runs`` and ``reflow rejected`` as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import DemoServer, cli

NULL_KEY_QUERY = ("SELECT id, email FROM customers"
                  " UNION ALL SELECT NULL AS id, 'nobody@example.com' AS email")


def _project(root: Path, demo: dict[str, str]) -> Path:
    """Two syncs into the demo CRM: one whose model has a row without a key, one on a
    table that does not exist."""
    (root / "sources").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "destinations").mkdir()
    (root / "syncs").mkdir()
    (root / "reflow.yml").write_text("version: 1\n")
    (root / "sources" / "warehouse.yml").write_text(
        f"type: sqlite\nname: Warehouse\ncredentials:\n  path: {demo['warehouse_path']}\n")
    (root / "models" / "with-null-key.sql").write_text(NULL_KEY_QUERY + "\n")
    (root / "models" / "with-null-key.yml").write_text(
        "source_id: warehouse\nname: With a null key\nquery_file: with-null-key.sql\n")
    (root / "destinations" / "crm.yml").write_text(
        f"type: sqlite\nname: CRM\ncredentials:\n  path: {demo['crm_path']}\n")
    mappings = ("mappings:\n- from: {type: column, data: id}\n  to: id\n"
                "  is_primary_identifier: true\n- from: {type: column, data: email}\n  to: email\n")
    (root / "syncs" / "emails.yml").write_text(
        "label: Emails\noperation: upsert\nsource_attributes:\n  connection_id: warehouse\n"
        "  object: {type: model, id: with-null-key}\ndestination_attributes:\n"
        "  connection_id: crm\n  object: customers\n" + mappings)
    (root / "syncs" / "broken.yml").write_text(
        "label: Broken\noperation: upsert\nsource_attributes:\n  connection_id: warehouse\n"
        "  object: {type: table, table_schema: main, table_name: no_such_table}\n"
        "destination_attributes:\n  connection_id: crm\n  object: customers\n" + mappings)
    return root


@pytest.fixture(scope="module")
def runs_workspace(demo_server: DemoServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    from reflow.cli import main

    token = demo_server.new_workspace("runs")
    project = _project(tmp_path_factory.mktemp("runs"), demo_server.demo)
    assert main(["apply", str(project), "--url", demo_server.base_url, "--token", token]) == 0
    return token


def test_run_wait_shows_progress_and_fails_past_max_rejected(
    demo_server: DemoServer, runs_workspace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, demo_server, runs_workspace, "run", "emails", "--wait",
                       "--max-rejected", "0", "--interval", "0.1")
    assert code == 3, err
    assert "completed" in err and "read 201" in err and "sent 200" in err, err
    assert "rejected 1" in err
    assert "rejected 1 records (more than --max-rejected 0)" in err

    code, out, _ = cli(capsys, demo_server, runs_workspace, "runs", "emails", "--json")
    assert code == 0
    runs = json.loads(out)
    assert [r["status"] for r in runs] == ["completed"]
    code, out, _ = cli(capsys, demo_server, runs_workspace, "rejected", str(runs[0]["id"]),
                       "--json")
    assert code == 0
    rejected = json.loads(out)
    assert [(r["status"], r["record_payload"]["email"]) for r in rejected] == [
        ("NULL", "nobody@example.com")]
    code, out, _ = cli(capsys, demo_server, runs_workspace, "rejected", str(runs[0]["id"]))
    assert code == 0 and "NULL" in out and "identifier" in out


def test_run_wait_within_threshold_and_the_table_of_runs(
    demo_server: DemoServer, runs_workspace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, demo_server, runs_workspace, "run", "emails", "--wait",
                         "--max-rejected", "1", "--json", "--interval", "0.1")
    assert code == 0, err
    final = json.loads(out)
    assert final["status"] == "completed" and final["source_record_invalids"] == 1
    code, out, _ = cli(capsys, demo_server, runs_workspace, "runs", "emails")
    assert code == 0 and "Runs of sync" in out and out.count("completed") == 2


def test_run_wait_exits_1_when_the_run_fails(
    demo_server: DemoServer, runs_workspace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, demo_server, runs_workspace, "run", "broken", "--wait",
                       "--interval", "0.1")
    assert code == 1
    assert "failed" in err and "no_such_table" in err, err


def test_run_of_an_unknown_slug(
    demo_server: DemoServer, runs_workspace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, demo_server, runs_workspace, "run", "nope")
    assert code == 1 and "no sync with slug 'nope'" in err
