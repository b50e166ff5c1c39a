"""Config as code against a real server: export -> apply into an empty workspace ->
export gives the same files; plan after apply is clean (exit 0); one mapping changed
plans as exactly that change (exit 2); plan changes nothing; --prune deletes only
objects the project manages; bad input names file, line, field and both ends."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import DemoServer, cli, files, state


@pytest.fixture(scope="module")
def exported(demo_server: DemoServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exported")
    from reflow.cli import main

    code = main(["export", str(root), "--url", demo_server.base_url,
                 "--token", demo_server.demo["workspace_token"]])
    assert code == 0
    return root


def test_export_writes_one_file_per_object_with_slugs(exported: Path) -> None:
    written = files(exported)
    assert sorted(written) == [
        "destinations/demo-crm.yml", "models/customers.sql", "models/customers.yml",
        "reflow.yml", "sources/demo-warehouse.yml", "syncs/customers-to-the-demo-crm.yml",
    ]
    sync = written["syncs/customers-to-the-demo-crm.yml"]
    assert "connection_id: demo-warehouse" in sync and "id: customers" in sync
    assert "connection_id: demo-crm" in sync
    assert written["models/customers.yml"].splitlines()[:3] == [
        "source_id: demo-warehouse", "name: Customers", "query_file: customers.sql"]


def test_round_trip_into_an_empty_workspace(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("round trip")
    code, out, _ = cli(capsys, demo_server, token, "plan", str(exported))
    assert code == 2 and out.count("+ ") == 4, out
    code, out, err = cli(capsys, demo_server, token, "apply", str(exported))
    assert code == 0, err
    assert "Apply complete: 4 applied." in out
    code, out, _ = cli(capsys, demo_server, token, "plan", str(exported))
    assert code == 0, out
    assert "0 to create, 0 to change, 0 to adopt, 0 to delete (4 unchanged)" in out
    again = tmp_path / "again"
    assert cli(capsys, demo_server, token, "export", str(again))[0] == 0
    assert files(again) == files(exported)
    with demo_server.api(token) as api:
        marks = api.get("/managed_objects").json()["data"]
    assert {(m["kind"], m["slug"], m["managed_by"]) for m in marks} == {
        ("source", "demo-warehouse", "reflow-project"), ("model", "customers", "reflow-project"),
        ("destination", "demo-crm", "reflow-project"),
        ("sync", "customers-to-the-demo-crm", "reflow-project"),
    }


def test_one_mapping_change_plans_as_that_change_and_plan_changes_nothing(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("one mapping")
    assert cli(capsys, demo_server, token, "apply", str(exported))[0] == 0
    project = tmp_path / "project"
    shutil.copytree(exported, project)
    sync_file = project / "syncs" / "customers-to-the-demo-crm.yml"
    sync_file.write_text(sync_file.read_text().replace("data: plan", "data: email"))
    before = state(demo_server, token)
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project))
    assert state(demo_server, token) == before  # plan never changes anything
    assert code == 2
    changed = [line for line in out.splitlines() if line.startswith("    ")]
    assert changed == ["    mappings[3].from.data: 'plan' -> 'email'"], out
    assert "~ sync customers-to-the-demo-crm" in out and "1 to change" in out
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project), "--json")
    assert code == 2
    [change] = [c for c in json.loads(out)["changes"] if c["action"] != "unmanaged"]
    assert (change["kind"], change["slug"], change["action"]) == (
        "sync", "customers-to-the-demo-crm", "update")
    assert change["diffs"] == [
        {"field": "mappings[3].from.data", "server": "plan", "project": "email"}]
    code, out, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 0, err
    assert cli(capsys, demo_server, token, "plan", str(project))[0] == 0
    with demo_server.api(token) as api:
        sync = api.get("/syncs").json()["data"][0]
    assert sync["mappings"][3]["from"]["data"] == "email"
    assert sync["mappings"][3]["to"] == "plan"


def test_adopting_the_exported_workspace_itself(
    demo_server: DemoServer, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Objects built in the API are matched by their derived slug and only marked."""
    token = demo_server.new_workspace("adopt")
    with demo_server.api(token) as api:
        made = api.post("/sources", json={"connection": {
            "type": "sqlite", "name": "Demo warehouse",
            "credentials": {"path": demo_server.demo["warehouse_path"]}}})
        assert made.status_code == 201, made.text
    project = exported.parent / "adopt-only"
    shutil.copytree(exported, project, dirs_exist_ok=True)
    for folder in ("models", "destinations", "syncs"):
        shutil.rmtree(project / folder)
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 2 and "= source demo-warehouse: adopt" in out, out
    assert cli(capsys, demo_server, token, "apply", str(project))[0] == 0
    assert cli(capsys, demo_server, token, "plan", str(project))[0] == 0


def test_prune_deletes_only_managed_objects_left_out(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("prune")
    assert cli(capsys, demo_server, token, "apply", str(exported))[0] == 0
    with demo_server.api(token) as api:  # made in the API: not managed by the project
        other = api.post("/destinations", json={"service_connection": {
            "type": "sqlite", "name": "Other CRM",
            "credentials": {"path": str(tmp_path / "other.sqlite")}}}).json()["data"]
    project = tmp_path / "project"
    shutil.copytree(exported, project)
    (project / "syncs" / "customers-to-the-demo-crm.yml").unlink()

    code, out, _ = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 0, out  # without --prune nothing would change
    assert "? sync customers-to-the-demo-crm: managed, not in project; --prune" in out
    assert "? destination other-crm: not managed; left alone" in out
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project), "--prune")
    assert code == 2 and "- sync customers-to-the-demo-crm: delete" in out, out
    assert "? destination other-crm: not managed; left alone" in out
    code, out, err = cli(capsys, demo_server, token, "apply", str(project), "--prune")
    assert code == 0, err
    with demo_server.api(token) as api:
        assert api.get("/syncs").json()["data"] == []
        names = {d["name"] for d in api.get("/destinations").json()["data"]}
    assert names == {"Demo CRM", other["name"]}
    assert cli(capsys, demo_server, token, "plan", str(project), "--prune")[0] == 0


def test_part_way_failure_reports_what_was_applied(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sync on a model this apply creates cannot be validated beforehand; when the
    server refuses it, the model stays (fully created) and the report says so."""
    token = demo_server.new_workspace("part way")
    assert cli(capsys, demo_server, token, "apply", str(exported))[0] == 0
    project = tmp_path / "project"
    shutil.copytree(exported, project)
    (project / "models" / "emails.yml").write_text(
        "source_id: demo-warehouse\nname: Emails\nquery: SELECT * FROM customers\n")
    sync = (project / "syncs" / "customers-to-the-demo-crm.yml").read_text()
    (project / "syncs" / "emails.yml").write_text(
        sync.replace("id: customers", "id: emails").replace("to: plan", "to: no_such_field")
        .replace("label: Customers to the demo CRM", "label: Emails"))
    code, out, _ = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 1
    assert "  ok      model emails: created" in out
    assert "  FAILED  sync emails: create failed" in out and "no_such_field" in out
    assert "Apply stopped: 1 applied, 1 failed (left as it was), 0 not attempted." in out
    with demo_server.api(token) as api:
        assert len(api.get("/syncs").json()["data"]) == 1


# -- bad input ------------------------------------------------------------------------

def _project(tmp_path: Path, exported: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(exported, project)
    return project


def test_yaml_error_names_file_and_line(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, exported)
    bad = project / "destinations" / "demo-crm.yml"
    bad.write_text("type: sqlite\nname: [unclosed\n")
    code, _, err = cli(capsys, demo_server, demo_server.demo["workspace_token"], "plan",
                       str(project))
    assert code == 1
    assert f"{bad}:3: not valid YAML" in err or f"{bad}:2: not valid YAML" in err, err


def test_schema_error_names_file_line_and_field(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, exported)
    sync = project / "syncs" / "customers-to-the-demo-crm.yml"
    lines = sync.read_text().splitlines()
    number = lines.index("operation: upsert") + 1
    sync.write_text(sync.read_text().replace("operation: upsert", "operation: upsertt"))
    code, _, err = cli(capsys, demo_server, demo_server.demo["workspace_token"], "apply",
                       str(project))
    assert code == 1
    assert f"{sync}:{number}: operation: Input should be" in err, err


def test_missing_slug_names_both_ends(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, exported)
    (project / "destinations" / "demo-crm.yml").rename(project / "destinations" / "crm.yml")
    sync = project / "syncs" / "customers-to-the-demo-crm.yml"
    code, _, err = cli(capsys, demo_server, demo_server.demo["workspace_token"], "plan",
                       str(project))
    assert code == 1
    assert f"{sync}:" in err
    assert ("destination_attributes.connection_id: sync 'customers-to-the-demo-crm' refers to"
            " destination 'demo-crm', which the project does not define (destinations: crm)"
            ) in err, err


def test_unset_environment_variable_names_it_and_the_object(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = demo_server.new_workspace("env")
    project = _project(tmp_path, exported)
    source = project / "sources" / "demo-warehouse.yml"
    source.write_text(source.read_text().replace(
        f"path: {demo_server.demo['warehouse_path']}", "path: ${REFLOW_TEST_WAREHOUSE}"))
    monkeypatch.delenv("REFLOW_TEST_WAREHOUSE", raising=False)
    before = state(demo_server, token)
    code, _, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 1
    assert (f"{source}:4: credentials.path: environment variable REFLOW_TEST_WAREHOUSE is not"
            " set (source 'demo-warehouse' needs it)") in err, err
    assert state(demo_server, token) == before
    monkeypatch.setenv("REFLOW_TEST_WAREHOUSE", demo_server.demo["warehouse_path"])
    assert cli(capsys, demo_server, token, "apply", str(project))[0] == 0
    assert cli(capsys, demo_server, token, "plan", str(project))[0] == 0


def test_apply_validates_every_sync_before_changing_anything(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("validate first")
    assert cli(capsys, demo_server, token, "apply", str(exported))[0] == 0
    project = _project(tmp_path, exported)
    source = project / "sources" / "demo-warehouse.yml"
    source.write_text(source.read_text().replace("Demo warehouse", "Renamed warehouse"))
    sync = project / "syncs" / "customers-to-the-demo-crm.yml"
    sync.write_text(sync.read_text().replace("to: plan", "to: no_such_field"))
    line = sync.read_text().splitlines().index("  to: no_such_field") + 1
    before = state(demo_server, token)
    code, _, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 1
    assert f"{sync}:{line}: sync customers-to-the-demo-crm: the server refuses it" in err, err
    assert "nothing was changed" in err
    assert state(demo_server, token) == before  # not even the source rename


def test_api_shows_what_is_managed_and_forgets_deleted_objects(
    demo_server: DemoServer, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("marks")
    assert cli(capsys, demo_server, token, "apply", str(exported))[0] == 0
    with demo_server.api(token) as api:
        sync = api.get("/syncs").json()["data"][0]
        assert (sync["slug"], sync["managed_by"]) == ("customers-to-the-demo-crm",
                                                      "reflow-project")
        source = api.get(f"/sources/{sync['source_attributes']['connection_id']}").json()["data"]
        assert (source["slug"], source["managed_by"]) == ("demo-warehouse", "reflow-project")
        model = api.get(f"/sources/{source['id']}/models").json()["data"][0]
        assert model["slug"] == "customers"
        destination = api.get("/destinations").json()["data"][0]
        assert destination["slug"] == "demo-crm"
        # Deleted through the API, then made again by hand: SQLite reuses the id, but the
        # new sync is not the managed one.
        body = {k: sync[k] for k in ("label", "operation", "mappings")}
        body["source_attributes"] = {"connection_id": source["id"],
                                     "object": {"type": "model", "id": model["id"]}}
        body["destination_attributes"] = {"connection_id": destination["id"],
                                          "object": "customers"}
        assert api.delete(f"/syncs/{sync['id']}").status_code == 200
        again = api.post("/syncs", json=body).json()["data"]["sync_id"]
        fresh = api.get(f"/syncs/{again}").json()["data"]
        assert (fresh["slug"], fresh["managed_by"]) == (None, None)
        kinds = {m["kind"] for m in api.get("/managed_objects").json()["data"]}
        assert kinds == {"source", "model", "destination"}
        refused = api.put(f"/managed_objects/model/{model['id'] + 1000}", json={"slug": "x"})
        assert refused.status_code == 404
        clash = api.put(f"/managed_objects/sync/{again}", json={"slug": "Not A Slug"})
        assert clash.status_code == 400 and "slug" in clash.json()["message"]
    code, out, _ = cli(capsys, demo_server, token, "plan", str(exported))
    assert code == 2 and f"= sync customers-to-the-demo-crm: adopt (id {again})" in out, out


def test_segments_round_trip_and_a_molecule_change(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A segment over the model, and a sync reading it, by slug."""
    project = _project(tmp_path, exported)
    (project / "segments").mkdir()
    (project / "segments" / "pro.yml").write_text(
        "source_id: demo-warehouse\nname: Pro customers\nmodel_id: customers\nmolecules:\n"
        "- attribute: plan\n  attribute_type: property\n  operator: is\n  value: pro\n")
    sync = (project / "syncs" / "customers-to-the-demo-crm.yml").read_text()
    (project / "syncs" / "pro.yml").write_text(
        sync.replace("label: Customers to the demo CRM", "label: Pro customers")
        .replace("type: model\n    id: customers", "type: segment\n    id: pro"))
    token = demo_server.new_workspace("segments")
    code, out, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 0, err
    assert "  ok      segment pro: created" in out
    assert cli(capsys, demo_server, token, "plan", str(project))[0] == 0
    again = tmp_path / "again"
    assert cli(capsys, demo_server, token, "export", str(again))[0] == 0
    assert files(again) == files(project)

    segment = project / "segments" / "pro.yml"
    segment.write_text(segment.read_text().replace("value: pro", "value: enterprise"))
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 2
    assert [line for line in out.splitlines() if line.startswith("    ")] == [
        "    molecules[0].value: 'pro' -> 'enterprise'"], out
    code, _, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 0, err
    code, out, err = cli(capsys, demo_server, token, "run", "pro", "--wait", "--json",
                         "--interval", "0.1")
    assert code == 0, err
    read = json.loads(out)["source_record_count"]
    with sqlite3.connect(demo_server.demo["warehouse_path"]) as conn:
        expected = conn.execute("SELECT count(*) FROM customers WHERE plan = 'enterprise'")
        assert read == expected.fetchone()[0]


def test_a_schedule_applies_once_and_a_bad_one_is_caught_before_apply(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("schedule")
    project = _project(tmp_path, exported)
    sync = project / "syncs" / "customers-to-the-demo-crm.yml"
    sync.write_text(sync.read_text() + "mode:\n  type: triggered\n  triggers:\n    schedule:\n"
                    "      frequency: daily\n      hour: 3\n      minute: 0\n")
    assert cli(capsys, demo_server, token, "apply", str(project))[0] == 0
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 0, out
    sync.write_text(sync.read_text().replace("hour: 3", "hour: 27"))
    line = sync.read_text().splitlines().index("mode:") + 1
    code, _, err = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 1 and f"{sync}:{line}: mode: " in err and "hour" in err, err


def test_a_bad_model_query_is_refused_before_anything_changes(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("bad query")
    assert cli(capsys, demo_server, token, "apply", str(exported))[0] == 0
    project = _project(tmp_path, exported)
    (project / "models" / "customers.sql").write_text("SELECT id, emial FROM customers\n")
    destination = project / "destinations" / "demo-crm.yml"
    destination.write_text(destination.read_text().replace("Demo CRM", "Renamed CRM"))
    before = state(demo_server, token)
    code, _, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 1
    model = project / "models" / "customers.yml"
    assert f"{model}:3: model customers: the server refuses it: query:" in err, err
    assert "emial" in err and "nothing was changed" in err
    assert state(demo_server, token) == before


def test_a_query_round_trips_byte_for_byte(
    demo_server: DemoServer, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = demo_server.new_workspace("whitespace")
    assert cli(capsys, demo_server, token, "apply", str(exported))[0] == 0
    query = "SELECT id,\r\n  email\tFROM customers  \n\n"
    with demo_server.api(token) as api:
        source = api.get("/sources").json()["data"][0]["id"]
        made = api.post(f"/sources/{source}/models", json={"name": "Odd spacing", "query": query})
        assert made.status_code == 201, made.text
    project = tmp_path / "project"
    assert cli(capsys, demo_server, token, "export", str(project))[0] == 0
    code, out, _ = cli(capsys, demo_server, token, "plan", str(project))
    assert code == 2 and "= model odd-spacing: adopt" in out and "~" not in out, out
    assert cli(capsys, demo_server, token, "apply", str(project))[0] == 0
    assert cli(capsys, demo_server, token, "plan", str(project))[0] == 0
