"""Salesforce end to end through the Census API, into its loopback fake
(tests/support/fakes/salesforce.py): upsert and mirror, a lookup sync, nulls left out, a
record Salesforce refuses (rejected with its reason, retried next run), the Bulk API 2.0
path, a revoked refresh token, the daily limit spent mid-run; and the 400s a sync save
gives for a lookup that cannot work.

One ``reflow serve`` (SQLite state store) and one PostgreSQL database serve the module."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, start_server, stop_server, wait_for_run
from tests.api.syncing import col, create_sync, model, pg_source, records, run, start, sync_body
from tests.conftest import (
    PG_ADMIN_USER,
    PG_HOST,
    PG_PORT,
    create_pg_database,
    drop_pg_database,
    require_service,
)
from tests.support.fakes.salesforce import SalesforceFake, SalesforceOrg

COMPANIES = [(i, f"Company {i}", i * 1000) for i in range(1, 21)]
PEOPLE = [(i, f"First{i}" if i % 4 else None, f"Last{i}", f"p{i}@example.com", (i % 20) + 1)
          for i in range(1, 351)]


@pytest.fixture(scope="module")
def reflow() -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="reflow-sf-"))
    server = start_server("sqlite", home)
    yield server
    stop_server(server)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def sql() -> Iterator[psycopg.Connection]:
    require_service("PostgreSQL", 5432)
    database = create_pg_database("reflow_sf")
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, dbname=database,
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE companies (id int PRIMARY KEY, name text, revenue int)")
        conn.cursor().executemany("INSERT INTO companies VALUES (%s, %s, %s)", COMPANIES)
        conn.execute("CREATE TABLE people (id int PRIMARY KEY, first text, last text,"
                     " email text, company int)")
        conn.cursor().executemany("INSERT INTO people VALUES (%s, %s, %s, %s, %s)", PEOPLE)
        yield conn
    drop_pg_database(database)


@pytest.fixture(scope="module")
def salesforce() -> Iterator[SalesforceFake]:
    with SalesforceFake() as fake:
        yield fake


@pytest.fixture
def org(salesforce: SalesforceFake) -> SalesforceOrg:
    return salesforce.org


@pytest.fixture
def api(reflow: Server) -> Iterator[httpx.Client]:
    with reflow.client() as client:
        yield client


@pytest.fixture(scope="module")
def source(reflow: Server, sql: psycopg.Connection) -> int:
    with reflow.client() as client:
        return pg_source(client, sql.info.dbname)


@pytest.fixture(scope="module")
def dest(reflow: Server, salesforce: SalesforceFake) -> int:
    with reflow.client() as client:
        return destination(client, salesforce.credentials())["id"]


def destination(api: httpx.Client, credentials: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/destinations", json={"service_connection": {
        "type": "salesforce", "name": "Salesforce", "credentials": credentials}})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def lookup(data: str, to: str, obj: str, field: str) -> dict[str, Any]:
    return {**col(data, to), "lookup_object": obj, "lookup_field": field}


def account_sync(api: httpx.Client, source: int, dest: int, operation: str = "mirror") -> int:
    model_id = model(api, source, "SELECT 'A-' || id AS ext, name, revenue FROM companies",
                     name=f"sf_accounts_{operation}")
    return create_sync(api, source, model_id, dest, "Account", operation, [
        col("ext", "External_Id__c", key=True), col("name", "Name"),
        col("revenue", "AnnualRevenue")])


def test_destination_shows_objects_with_reference_targets(api: httpx.Client, dest: int) -> None:
    shown = api.get(f"/destinations/{dest}").json()["data"]
    assert shown["last_test_succeeded"], shown
    assert "refresh_token" not in shown["connection_details"]
    contact = api.get(f"/destinations/{dest}/objects/Contact").json()["data"]
    fields = {f["full_name"]: f for f in contact["fields"]}
    assert fields["AccountId"]["lookup_object"] == "Account"
    assert fields["External_Id__c"]["can_be_upsert_key"] is True
    assert fields["Id"]["createable"] is False and fields["Email"]["lookup_object"] is None
    assert fields["Email"]["preserve_values_supported"] is True  # read through SOQL
    assert fields["Id"]["preserve_values_supported"] is False


def test_mirror_lands_exactly_then_sends_only_changes(
        api: httpx.Client, source: int, dest: int, org: SalesforceOrg,
        sql: psycopg.Connection) -> None:
    sync_id = account_sync(api, source, dest)
    assert run(api, sync_id)["records_updated"] == 20
    got = {k: (r["Name"], r["AnnualRevenue"]) for k, r in org.by("Account", "External_Id__c")
           .items()}
    assert got == {f"A-{i}": (name, float(rev)) for i, name, rev in COMPANIES}
    sql.execute("UPDATE companies SET name = 'Renamed' WHERE id = 3")
    sql.execute("DELETE FROM companies WHERE id = 20")
    try:
        second = run(api, sync_id)
        assert (second["records_processed"], second["records_updated"]) == (2, 2)
        accounts = org.by("Account", "External_Id__c")
        assert len(accounts) == 19 and "A-20" not in accounts
        assert accounts["A-3"]["Name"] == "Renamed"
    finally:
        sql.execute("UPDATE companies SET name = 'Company 3' WHERE id = 3")
        sql.execute("INSERT INTO companies VALUES (%s, %s, %s)", COMPANIES[19])
    run(api, sync_id)  # the contacts below look their accounts up


def test_sync_all_properties_maps_same_named_fields(
        api: httpx.Client, source: int, dest: int, org: SalesforceOrg) -> None:
    # Salesforce fields are not created (no Metadata API): a column without a field of
    # that name (case-insensitive, as Salesforce's names) is left out.
    model_id = model(api, source, "SELECT 'S-' || id AS ext, name, revenue AS annualrevenue,"
                     " 'blue' AS colour FROM companies WHERE id <= 3", name="sf_all")
    sync_id = create_sync(api, source, model_id, dest, "Account", "upsert",
                          [col("ext", "External_Id__c", key=True)],
                          field_behavior="sync_all_properties")
    assert run(api, sync_id)["records_updated"] == 3
    got = {k: r for k, r in org.by("Account", "External_Id__c").items() if k.startswith("S-")}
    assert {k: (r["Name"], r["AnnualRevenue"]) for k, r in got.items()} == {
        f"S-{i}": (f"Company {i}", float(i * 1000)) for i in (1, 2, 3)}


def contact_mappings() -> list[dict[str, Any]]:
    return [col("ext", "External_Id__c", key=True), col("last", "LastName"),
            {**col("first", "FirstName"), "sync_null_values": False},
            lookup("account", "AccountId", "Account", "External_Id__c")]


def contact_model(api: httpx.Client, source: int, name: str, where: str = "") -> int:
    return model(api, source, "SELECT 'C-' || id AS ext, first, last, email,"
                 f" 'A-' || company AS account FROM people {where}", name=name)


def test_lookup_sync_lands_in_the_reference_and_keeps_values_over_nulls(
        api: httpx.Client, source: int, dest: int, org: SalesforceOrg) -> None:
    org.records.get("Contact", {}).clear()
    org.records.setdefault("Contact", {})["003preexisting00001"] = {
        "Id": "003preexisting00001", "External_Id__c": "C-4", "LastName": "Old",
        "FirstName": "Kept", "HasOptedOutOfEmail": False}
    sync_id = create_sync(api, source, contact_model(api, source, "sf_lookup", "WHERE id <= 40"),
                          dest, "Contact", "upsert", contact_mappings())
    assert run(api, sync_id)["records_updated"] == 40
    account_ids = {k: r["Id"] for k, r in org.by("Account", "External_Id__c").items()}
    contacts = org.by("Contact", "External_Id__c")
    assert {k: (c["LastName"], c["AccountId"]) for k, c in contacts.items()} == {
        f"C-{i}": (f"Last{i}", account_ids[f"A-{(i % 20) + 1}"]) for i in range(1, 41)}
    assert contacts["C-4"]["FirstName"] == "Kept"  # a null did not overwrite it
    assert contacts["C-5"]["FirstName"] == "First5" and contacts["C-8"]["FirstName"] is None


def test_lookups_that_cannot_work_are_refused_when_saved(
        api: httpx.Client, source: int, dest: int) -> None:
    model_id = contact_model(api, source, "sf_bad_lookups")
    cases = [
        (lookup("account", "AccountId", "Nope__c", "External_Id__c"), "Nope__c"),
        (lookup("account", "AccountId", "Account", "Name"), "lookup_field: Account has no"),
        (lookup("account", "LastName", "Account", "External_Id__c"), "not a reference"),
        (lookup("account", "AccountId", "Lead", "External_Id__c"), "references Account"),
        ({**col("account", "AccountId"), "lookup_object": "Account"}, "lookup_field"),
    ]
    for mapping, message in cases:
        body = sync_body(source, model_id, dest, "Contact", "upsert",
                         [col("ext", "External_Id__c", key=True), mapping])
        response = api.post("/syncs", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("mappings[1]")
        assert message in response.json()["message"]
    unknown = api.post("/syncs", json=sync_body(source, model_id, dest, "Contact", "upsert", [
        col("ext", "External_Id__c", key=True), col("last", "Surname__c")]))
    assert unknown.status_code == 400 and "Surname__c" in unknown.json()["message"]


def test_refused_record_is_rejected_with_salesforces_reason_and_retried(
        api: httpx.Client, source: int, dest: int, org: SalesforceOrg) -> None:
    model_id = model(api, source, "SELECT 'R-' || id AS ext, CASE WHEN id = 5 THEN"
                     " 'not-an-email' ELSE email END AS email, last FROM people"
                     " WHERE id <= 10", name="sf_refused")
    sync_id = create_sync(api, source, model_id, dest, "Lead", "upsert", [
        col("ext", "External_Id__c", key=True), col("email", "Email"), col("last", "LastName"),
        {"from": {"type": "constant_value", "data": {"value": "Acme", "basic_type": "text"}},
         "to": "Company", "is_primary_identifier": False}])
    first = run(api, sync_id)
    assert (first["records_updated"], first["records_failed"]) == (9, 1)
    failed = records(api, first["id"], status="rejected")
    assert [r["identifier"] for r in failed] == ["R-5"]
    assert failed[0]["status_message"] == ("INVALID_EMAIL_ADDRESS: Email: invalid email"
                                           " address: not-an-email (Email)")
    before = len(org.requests_to("/composite/sobjects/Lead"))
    second = run(api, sync_id)
    assert (second["records_processed"], second["records_failed"]) == (1, 1)
    assert len(org.requests_to("/composite/sobjects/Lead")) == before + 1


def test_a_large_batch_goes_through_bulk_api(api: httpx.Client, source: int, dest: int,
                                             org: SalesforceOrg) -> None:
    model_id = model(api, source, "SELECT 'T-' || id AS ext, CASE WHEN id = 77 THEN"
                     " repeat('x', 81) ELSE last END AS name, id * 1.5 AS amount,"
                     " 'A-' || company AS account FROM people", name="sf_bulk")
    sync_id = create_sync(api, source, model_id, dest, "Thing__c", "upsert", [
        col("ext", "External_Id__c", key=True), col("name", "Name"),
        col("amount", "Amount__c"), lookup("account", "Account__c", "Account",
                                           "External_Id__c")],
        advanced_configuration={"bulk_threshold": 100})
    jobs_before = len(org.jobs)
    result = run(api, sync_id)
    assert (result["records_updated"], result["records_failed"]) == (349, 1)
    failed = records(api, result["id"], status="rejected")
    assert [(r["identifier"], r["status_message"]) for r in failed] == [
        ("T-77", "STRING_TOO_LONG: Name: data value too large: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxx (max length=80) (Name)")]
    assert len(org.jobs) == jobs_before + 1 and not org.requests_to("/composite/sobjects/Thing__c")
    things = org.by("Thing__c", "External_Id__c")
    account_ids = {k: r["Id"] for k, r in org.by("Account", "External_Id__c").items()}
    assert len(things) == 349 and "T-77" not in things
    assert things["T-10"]["Amount__c"] == 15.0
    assert things["T-10"]["Account__c"] == account_ids["A-11"]


def test_daily_limit_mid_run_fails_clearly_and_the_next_run_sends_the_rest(
        api: httpx.Client, source: int, dest: int, org: SalesforceOrg) -> None:
    sync_id = create_sync(api, source, contact_model(api, source, "sf_quota"), dest,
                          "Contact", "upsert", contact_mappings())
    org.records.get("Contact", {}).clear()
    org.writes_left = 1  # one sObject Collections request of 200, then the daily limit
    try:
        failed = wait_for_run(api, start(api, sync_id))
        assert failed["status"] == "failed"
        assert "daily API request limit" in failed["error_message"]
        assert "REQUEST_LIMIT_EXCEEDED" in failed["error_message"]
        arrived = set(org.by("Contact", "External_Id__c"))
        assert len(arrived) in (150, 200)  # either request of the two may go first
    finally:
        org.writes_left, org.api_limit = None, 100_000  # the 24-hour window moved on
    sent: list[str] = []
    original = org.upsert

    def spy(obj: str, ext: str, record: dict[str, Any]) -> dict[str, Any]:
        sent.append(record["External_Id__c"])
        return original(obj, ext, record)

    org.upsert = spy  # type: ignore[method-assign]
    try:
        run(api, sync_id)
    finally:
        org.upsert = original  # type: ignore[method-assign]
    everyone = {f"C-{i}" for i in range(1, 351)}
    assert sorted(sent) == sorted(everyone - arrived)
    assert set(org.by("Contact", "External_Id__c")) == everyone


def test_revoked_refresh_token_fails_the_run_and_says_reconnect(
        api: httpx.Client, source: int, salesforce: SalesforceFake, org: SalesforceOrg) -> None:
    org.refresh_tokens.add("5Aep-second-user")
    created = destination(api, salesforce.credentials(refresh_token="5Aep-second-user"))
    sync_id = account_sync(api, source, created["id"], "upsert")
    run(api, sync_id)
    run(api, sync_id, force_full_sync=True)
    # One token for the connection test, the sync's checks and two runs: the token was
    # stored (encrypted, with the instance URL) and reused by every later connector.
    assert org.grants.count("5Aep-second-user") == 1
    org.refresh_tokens.discard("5Aep-second-user")  # the user revoked the app's access
    org.expire_tokens()
    failed = wait_for_run(api, start(api, sync_id, force_full_sync=True))
    assert failed["status"] == "failed"
    assert "invalid_grant: expired access/refresh token" in failed["error_message"]
    assert "Reconnect the destination" in failed["error_message"]
    shown = api.get(f"/destinations/{created['id']}").json()["data"]
    assert shown["last_test_succeeded"] is False
    step = shown["last_test_results"]["steps"][-1]
    assert "Reconnect the destination" in step["error"]["message"]
