"""dbt models as sync sources through a project: a source's ``dbt_manifest`` is the URL
of a manifest.json on a loopback HTTP server (as a dbt artifacts store serves it); its
models become models with their columns and descriptions; a sync names one as
``{type: dbt_model, id: <name>}`` and follows it when the manifest changes."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import DemoServer, cli, files, state


class ManifestStore:
    """Serves ``/manifest.json`` from ``self.manifest``; anything else is a 404."""

    def __init__(self) -> None:
        self.manifest: dict[str, Any] = {}
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                body = json.dumps(store.manifest).encode()
                found = self.path == "/manifest.json"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if found else 0))
                self.end_headers()
                if found:
                    self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/manifest.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, alias: str) -> None:
        self.manifest = {"metadata": {"dbt_version": "1.8.0"}, "nodes": {
            "model.shop.dim_customers": {
                "resource_type": "model", "name": "dim_customers", "database": "",
                "schema": "main", "alias": alias, "config": {"materialized": "table"},
                "description": "One row per customer",
                "compiled_code": f"select * from raw_{alias}",
                "columns": {"email": {"name": "email", "description": "Where we write to"}},
            },
            "model.shop.stg": {"resource_type": "model", "name": "stg", "schema": "main",
                               "config": {"materialized": "ephemeral"}},
        }}


@pytest.fixture
def store() -> Iterator[ManifestStore]:
    served = ManifestStore()
    yield served
    served.server.shutdown()


def _databases(root: Path) -> tuple[Path, Path]:
    warehouse, crm = root / "warehouse.sqlite", root / "crm.sqlite"
    with sqlite3.connect(warehouse) as conn:
        for table, count in (("customers", 3), ("vip_customers", 2)):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, email TEXT)")
            conn.executemany(f"INSERT INTO {table} VALUES (?, ?)",
                             [(i, f"{table}{i}@example.com") for i in range(1, count + 1)])
    with sqlite3.connect(crm) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
    return warehouse, crm


def _project(root: Path, manifest_url: str, warehouse: Path, crm: Path, model: str) -> Path:
    for folder in ("sources", "destinations", "syncs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "reflow.yml").write_text("version: 1\n")
    (root / "sources" / "shop.yml").write_text(
        f"type: sqlite\nname: Shop\ncredentials:\n  path: {warehouse}\n"
        f"dbt_manifest: {manifest_url}\n")
    (root / "destinations" / "crm.yml").write_text(
        f"type: sqlite\nname: CRM\ncredentials:\n  path: {crm}\n")
    (root / "syncs" / "customers.yml").write_text(
        "label: Customers\noperation: upsert\nsource_attributes:\n  connection_id: shop\n"
        f"  object:\n    type: dbt_model\n    id: {model}\ndestination_attributes:\n"
        "  connection_id: crm\n  object: customers\nmappings:\n"
        "- from: {type: column, data: id}\n  to: id\n  is_primary_identifier: true\n"
        "- from: {type: column, data: email}\n  to: email\n")
    return root


def test_a_sync_on_a_dbt_model_follows_the_manifest(
    demo_server: DemoServer, store: ManifestStore, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = demo_server.new_workspace("dbt")
    warehouse, crm = _databases(tmp_path)
    store.publish("customers")
    project = _project(tmp_path / "project", store.url, warehouse, crm, "dim_customers")
    code, out, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 0, err
    assert "+ source shop: create" in out and "+ sync customers: create" in out

    with demo_server.api(token) as api:
        source = api.get("/sources").json()["data"][0]
        [model] = api.get(f"/sources/{source['id']}/models").json()["data"]
    assert (model["name"], model["description"]) == ("dim_customers", "One row per customer")
    assert model["query"] == 'SELECT * FROM "customers"'
    assert [(c["name"], c.get("description")) for c in model["columns"]] == [
        ("id", None), ("email", "Where we write to")]

    code, _, err = cli(capsys, demo_server, token, "run", "customers", "--wait", "--json",
                       "--interval", "0.1")
    assert code == 0, err
    assert cli(capsys, demo_server, token, "plan", str(project))[0] == 0

    # dbt now builds the model into another relation: apply re-reads the manifest
    store.publish("vip_customers")
    code, out, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 0, err
    assert "source shop: dbt project re-read (1 models)" in out
    code, out, _ = cli(capsys, demo_server, token, "run", "customers", "--wait", "--json",
                       "--interval", "0.1")
    assert code == 0
    assert json.loads(out)["source_record_count"] == 2
    with sqlite3.connect(crm) as conn:
        emails = {r[0] for r in conn.execute("SELECT email FROM customers")}
    assert "vip_customers1@example.com" in emails

    exported = tmp_path / "exported"
    assert cli(capsys, demo_server, token, "export", str(exported))[0] == 0
    written = files(exported)
    assert f"dbt_manifest: {store.url}" in written["sources/shop.yml"]
    assert not any(name.startswith("models/") for name in written)  # the manifest's, not ours
    assert "type: dbt_model\n    id: dim_customers" in written["syncs/customers.yml"]


def test_a_dbt_model_missing_from_the_manifest_names_both_ends(
    demo_server: DemoServer, store: ManifestStore, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = demo_server.new_workspace("dbt missing")
    warehouse, crm = _databases(tmp_path)
    store.publish("customers")
    project = _project(tmp_path / "project", store.url, warehouse, crm, "dim_customers")
    assert cli(capsys, demo_server, token, "apply", str(project))[0] == 0
    sync = project / "syncs" / "customers.yml"
    sync.write_text(sync.read_text().replace("id: dim_customers", "id: fct_orders"))
    before = state(demo_server, token)
    code, _, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 1
    assert (f"{sync}:1: sync customers: source_attributes.object.id: dbt model 'fct_orders'"
            " is not in the manifest of source 'shop' (dim_customers)") in err, err
    assert state(demo_server, token) == before

    store.manifest = {"no": "nodes"}  # the store now serves something else
    code, _, err = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 1 and "source shop: the dbt manifest cannot be read" in err, err
    assert "has no 'nodes' object" in err


def test_a_new_source_whose_manifest_cannot_be_read_is_not_left_behind(
    demo_server: DemoServer, store: ManifestStore, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = demo_server.new_workspace("dbt unreadable")
    warehouse, crm = _databases(tmp_path)
    missing = store.url.replace("manifest.json", "missing.json")
    project = _project(tmp_path / "project", missing, warehouse, crm, "dim_customers")
    code, out, _ = cli(capsys, demo_server, token, "apply", str(project))
    assert code == 1
    assert "  FAILED  source shop: create failed:" in out and "answered 404" in out, out
    assert "  skipped sync customers" in out
    with demo_server.api(token) as api:
        assert api.get("/sources").json()["data"] == []
