"""Lookup mappings (``lookup_object``/``lookup_field``) through the API into SQLite: a
foreign key filled from the parent's unique field, an unknown parent rejected and
retried, and the 400s a sync save gives (Salesforce's are in test_saas_salesforce.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx

from tests.api.syncing import col, connections, create_sync, model, records, run, sync_body

SOURCE = """
    SELECT * FROM (VALUES (1, 'One', 'A-1'), (2, 'Two', 'A-2'), (3, 'Three', 'A-9'))
        AS v(id, name, account)
"""


def lookup(data: str, to: str, obj: str, field: str) -> dict[str, Any]:
    return {**col(data, to), "lookup_object": obj, "lookup_field": field}


def test_lookup_into_sqlite_foreign_key(api: httpx.Client, pg_database: str,
                                        tmp_path: Path) -> None:
    path = tmp_path / "crm.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, ext TEXT UNIQUE,"
                     " name TEXT)")
        conn.execute("INSERT INTO accounts VALUES (10, 'A-1', 'Acme'), (20, 'A-2', 'Beta')")
        conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT,"
                     " account_id INTEGER REFERENCES accounts (id))")
    conn.close()
    source_id, _ = connections(api, pg_database)
    dest = api.post("/destinations", json={"service_connection": {
        "type": "sqlite", "name": "CRM", "credentials": {"path": str(path)}}})
    assert dest.status_code == 201, dest.text
    dest_id = dest.json()["data"]["id"]
    shown = api.get(f"/destinations/{dest_id}/objects/contacts").json()["data"]
    assert {f["full_name"]: f["lookup_object"] for f in shown["fields"]}["account_id"] == (
        "accounts")
    model_id = model(api, source_id, SOURCE)

    for mapping, message in [
        (lookup("account", "account_id", "accounts", "name"),
         "mappings[2].lookup_field: accounts has no external id or unique field 'name'"),
        (lookup("account", "account_id", "leads", "ext"),
         "mappings[2].lookup_object: contacts.account_id references accounts, not leads"),
        (lookup("account", "name", "accounts", "ext"),
         "mappings[2].to: contacts.name is not a reference field"),
    ]:
        refused = api.post("/syncs", json=sync_body(
            source_id, model_id, dest_id, "contacts", "upsert",
            [col("id", key=True), col("name"), mapping]))
        assert refused.status_code == 400, refused.text
        assert refused.json()["message"] == message

    sync_id = create_sync(api, source_id, model_id, dest_id, "contacts", "upsert", [
        col("id", key=True), col("name"), lookup("account", "account_id", "accounts", "ext")])
    first = run(api, sync_id)
    assert (first["records_updated"], first["records_failed"]) == (2, 1)
    failed = records(api, first["id"], status="rejected")
    assert [(r["identifier"], r["status_message"]) for r in failed] == [
        ("3", "account_id: no accounts with ext = 'A-9'")]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM contacts ORDER BY id").fetchall() == [
            (1, "One", 10), (2, "Two", 20)]
        conn.execute("INSERT INTO accounts VALUES (90, 'A-9', 'Late')")
    conn.close()
    second = run(api, sync_id)  # the rejected record is retried, and lands now
    assert (second["records_processed"], second["records_failed"]) == (1, 0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT account_id FROM contacts WHERE id = 3").fetchone() == (90,)
    conn.close()
