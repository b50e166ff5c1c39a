"""HubSpot, Braze and Segment end to end through the Census API, each into its loopback
fake (tests/support/fakes): destinations created, syncs saved and triggered, runs waited
for, and what arrived read back from the fake, exactly. Plus the bad-input paths of
issue 12: wrong credentials, unknown objects and fields, a record the vendor refuses,
a daily quota spent mid-run, a revoked OAuth refresh token.

One ``reflow serve`` (SQLite state store) and one PostgreSQL database serve the module:
what is under test is the connectors behind the API, not the state store."""

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
from tests.support.fakes.braze import BrazeFake
from tests.support.fakes.hubspot import HubSpotFake
from tests.support.fakes.segment import SegmentFake

PEOPLE = [(i, f"p{i}@example.com", f"First{i}", i * 1000) for i in range(1, 351)]


@pytest.fixture(scope="module")
def reflow() -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="reflow-saas-"))
    server = start_server("sqlite", home)
    yield server
    stop_server(server)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def warehouse() -> Iterator[str]:
    require_service("PostgreSQL", 5432)
    database = create_pg_database("reflow_saas")
    yield database
    drop_pg_database(database)


@pytest.fixture(scope="module")
def sql(warehouse: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, dbname=warehouse,
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id int PRIMARY KEY, email text, first text,"
                     " revenue bigint)")
        conn.cursor().executemany("INSERT INTO people VALUES (%s, %s, %s, %s)", PEOPLE)
        conn.execute("CREATE TABLE events (event_id int PRIMARY KEY, user_id text, name text,"
                     " plan text)")
        conn.cursor().executemany("INSERT INTO events VALUES (%s, %s, %s, %s)",
                         [(i, f"u{i % 3}", "Signed Up", "pro") for i in range(1, 6)])
        yield conn


@pytest.fixture
def api(reflow: Server) -> Iterator[httpx.Client]:
    with reflow.client() as client:
        yield client


@pytest.fixture(scope="module")
def source(reflow: Server, warehouse: str, sql: psycopg.Connection) -> int:
    with reflow.client() as client:
        return pg_source(client, warehouse)


def destination(api: httpx.Client, type_: str, credentials: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/destinations", json={"service_connection": {
        "type": type_, "name": type_, "credentials": credentials}})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def first_step(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data["last_test_results"]["steps"][-1])


# --- HubSpot ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hubspot() -> Iterator[HubSpotFake]:
    with HubSpotFake(rate_limit=None) as fake:
        yield fake


def hubspot_sync(api: httpx.Client, source: int, dest: int, operation: str,
                 sql_text: str = "SELECT * FROM people") -> int:
    model_id = model(api, source, sql_text, name=f"hs_{operation}_{dest}")
    return create_sync(api, source, model_id, dest, "contacts", operation, [
        col("email", key=True), col("first", "firstname"), col("revenue", "annualrevenue")])


def test_hubspot_upsert_and_mirror_land_exactly(api: httpx.Client, source: int,
                                                hubspot: HubSpotFake,
                                                sql: psycopg.Connection) -> None:
    dest = destination(api, "hubspot", hubspot.credentials())
    assert dest["last_test_succeeded"], dest
    sync_id = hubspot_sync(api, source, dest["id"], "mirror",
                           "SELECT * FROM people WHERE id <= 120")
    result = run(api, sync_id)
    assert result["records_updated"] == 120
    expected = {f"p{i}@example.com": {"email": f"p{i}@example.com", "firstname": f"First{i}",
                                      "annualrevenue": str(i * 1000)} for i in range(1, 121)}
    got = {r["email"]: {k: r[k] for k in ("email", "firstname", "annualrevenue")}
           for r in hubspot.rows("contacts")}
    assert got == expected
    sql.execute("UPDATE people SET first = 'Changed' WHERE id = 7")
    sql.execute("DELETE FROM people WHERE id IN (8, 9)")
    try:
        before = len(hubspot.requests)
        second = run(api, sync_id)
        assert (second["records_updated"], second["records_processed"]) == (3, 3)
        rows = {r["email"]: r for r in hubspot.rows("contacts")}
        assert len(rows) == 118 and "p8@example.com" not in rows
        assert rows["p7@example.com"]["firstname"] == "Changed"
        writes = [p for _, _, p in hubspot.requests[before:] if "/batch/" in p]
        assert writes == ["/crm/v3/objects/contacts/batch/upsert",
                          "/crm/v3/objects/contacts/batch/read",
                          "/crm/v3/objects/contacts/batch/archive"]
    finally:
        sql.execute("UPDATE people SET first = 'First7' WHERE id = 7")
        sql.cursor().executemany("INSERT INTO people VALUES (%s, %s, %s, %s)", PEOPLE[7:9])


def test_hubspot_wrong_token_unknown_object_and_field(api: httpx.Client, source: int,
                                                      hubspot: HubSpotFake) -> None:
    wrong = destination(api, "hubspot", hubspot.credentials(access_token="pat-na1-nope"))
    step = first_step(wrong)
    assert step["status"] == "failed"
    assert "Authentication credentials not found" in step["error"]["message"]
    dest = destination(api, "hubspot", hubspot.credentials())
    model_id = model(api, source, "SELECT * FROM people", name="hs_bad_input")
    unknown_object = api.post("/syncs", json=sync_body(
        source, model_id, dest["id"], "widgets", "upsert", [col("email", key=True)]))
    assert unknown_object.status_code in (400, 404), unknown_object.text
    assert "widgets" in unknown_object.json()["message"]
    unknown_field = api.post("/syncs", json=sync_body(
        source, model_id, dest["id"], "contacts", "upsert",
        [col("email", key=True), col("first", "favourite_colour")]))
    assert unknown_field.status_code == 400, unknown_field.text
    assert "favourite_colour" in unknown_field.json()["message"]


def test_hubspot_refused_record_is_rejected_and_retried(api: httpx.Client, source: int,
                                                        hubspot: HubSpotFake) -> None:
    dest = destination(api, "hubspot", hubspot.credentials())
    model_id = model(api, source, "SELECT id, CASE WHEN id = 5 THEN 'broken' ELSE email END"
                     " AS email, first FROM people WHERE id <= 10", name="hs_refused")
    sync_id = create_sync(api, source, model_id, dest["id"], "contacts", "upsert",
                          [col("email", key=True), col("first", "firstname")])
    first = run(api, sync_id)
    assert (first["records_updated"], first["records_failed"]) == (9, 1)
    failed = records(api, first["id"], status="rejected")
    assert [r["identifier"] for r in failed] == ["broken"]
    assert "Email address broken is invalid" in failed[0]["status_message"]
    before = len(hubspot.requests)
    second = run(api, sync_id)
    assert (second["records_processed"], second["records_failed"]) == (1, 1)
    assert [p for _, _, p in hubspot.requests[before:] if "/batch/" in p] == [
        "/crm/v3/objects/contacts/batch/upsert"]


def test_hubspot_daily_quota_mid_run_then_only_the_rest(api: httpx.Client, source: int,
                                                        hubspot: HubSpotFake) -> None:
    dest = destination(api, "hubspot", hubspot.credentials())
    model_id = model(api, source, "SELECT id, 'q' || email AS email, first FROM people",
                     name="hs_quota")
    sync_id = create_sync(api, source, model_id, dest["id"], "contacts", "upsert",
                          [col("email", key=True), col("first", "firstname")])
    hubspot.exhaust_after(2)  # two requests of 100 records, then the daily limit
    try:
        failed = wait_for_run(api, start(api, sync_id))
        assert failed["status"] == "failed"
        assert "You have reached your daily limit" in failed["error_message"]
        assert "next run" in failed["error_message"]
        arrived = {r["email"] for r in hubspot.rows("contacts") if r["email"].startswith("q")}
        # Two of the four requests (100, 100, 100 and 50 records, in flight together)
        # were acknowledged before the quota ran out.
        assert len(arrived) in (150, 200)
    finally:
        hubspot.exhaust_after(None)  # midnight in the portal's time zone
    sent: list[str] = []
    original = hubspot._upsert

    def spy(obj: Any, inputs: list[Any], body: Any) -> Any:
        sent.extend(str(item["id"]) for item in inputs)
        return original(obj, inputs, body)

    hubspot._upsert = spy  # type: ignore[method-assign]
    try:
        run(api, sync_id)
    finally:
        hubspot._upsert = original  # type: ignore[method-assign]
    everyone = {f"qp{i}@example.com" for i in range(1, 351)}
    assert sorted(sent) == sorted(everyone - arrived)
    assert {r["email"] for r in hubspot.rows("contacts")} >= everyone


def test_hubspot_oauth_token_is_kept_and_a_revoked_one_says_reconnect(
    api: httpx.Client, source: int, hubspot: HubSpotFake,
) -> None:
    hubspot.refresh_tokens = {"hs-refresh-e2e"}
    hubspot.access_tokens.clear()
    dest = destination(api, "hubspot", hubspot.oauth_credentials())
    assert dest["last_test_succeeded"], dest
    assert set(dest["connection_details"]) == {"client_id", "base_url"}
    sync_id = hubspot_sync(api, source, dest["id"], "upsert",
                           "SELECT * FROM people WHERE id <= 3")
    run(api, sync_id)
    run(api, sync_id, force_full_sync=True)
    # One token for the test, the sync's checks and two runs: the renewed token was
    # stored (encrypted, with the credentials) and reused by every later connector.
    assert len(hubspot.access_tokens) == 1
    hubspot.refresh_tokens.clear()  # the user uninstalled the app
    hubspot.expire_tokens()
    failed = wait_for_run(api, start(api, sync_id, force_full_sync=True))
    assert failed["status"] == "failed"
    assert "Reconnect the destination" in failed["error_message"]
    shown = api.get(f"/destinations/{dest['id']}").json()["data"]
    assert shown["last_test_succeeded"] is False
    assert "Reconnect the destination" in first_step(shown)["error"]["message"]


def test_hubspot_sync_all_properties_creates_the_missing_ones(
    api: httpx.Client, source: int, hubspot: HubSpotFake,
) -> None:
    dest = destination(api, "hubspot", hubspot.credentials())
    model_id = model(api, source, "SELECT 'all' || email AS email, first AS firstname,"
                     " revenue AS lifetime_value, id % 2 = 0 AS is_vip FROM people"
                     " WHERE id <= 4", name="hs_all_properties")
    sync_id = create_sync(api, source, model_id, dest["id"], "contacts", "upsert",
                          [col("email", key=True)], field_behavior="sync_all_properties")
    try:
        run(api, sync_id)
        props = {p["name"]: p for p in hubspot.objects["contacts"].properties}
        assert (props["lifetime_value"]["type"], props["is_vip"]["type"]) == ("number", "bool")
        got = {r["email"]: (r["firstname"], r["lifetime_value"], r["is_vip"])
               for r in hubspot.rows("contacts") if r["email"].startswith("all")}
        assert got == {f"allp{i}@example.com": (f"First{i}", str(i * 1000),
                                                 "true" if i % 2 == 0 else "false")
                       for i in range(1, 5)}
    finally:
        hubspot.objects["contacts"].properties[:] = [
            p for p in hubspot.objects["contacts"].properties
            if p["name"] not in ("lifetime_value", "is_vip")]


def lookup(column: str, to: str, obj: str, field: str) -> dict[str, Any]:
    return {**col(column, to), "lookup_object": obj, "lookup_field": field}


def test_hubspot_lookup_associates_contacts_with_companies(
    api: httpx.Client, source: int, hubspot: HubSpotFake,
) -> None:
    dest = destination(api, "hubspot", hubspot.credentials())
    companies = model(api, source, "SELECT 'co' || (id % 3) AS company_key,"
                      " 'Company ' || (id % 3) AS name FROM people WHERE id <= 3",
                      name="hs_companies")
    run(api, create_sync(api, source, companies, dest["id"], "companies", "upsert",
                         [col("company_key", key=True), col("name")]))
    people = model(api, source, "SELECT 'lk' || email AS email, 'co' || (id % 4) AS company"
                   " FROM people WHERE id <= 8", name="hs_lookup")
    refused = api.post("/syncs", json=sync_body(source, people, dest["id"], "contacts",
                                                "upsert", [col("email", key=True),
                                                           lookup("company", "associated_company",
                                                                  "companies", "name")]))
    assert refused.status_code == 400
    assert "lookup_field: companies has no external id or unique field 'name'" in \
        refused.json()["message"]
    sync_id = create_sync(api, source, people, dest["id"], "contacts", "upsert", [
        col("email", key=True), lookup("company", "associated_company", "companies",
                                       "company_key")])
    result = run(api, sync_id)
    # co3 does not exist in HubSpot: those two contacts are written but rejected (their
    # association is missing), so the next run tries again.
    assert (result["records_updated"], result["records_failed"]) == (6, 2)
    reasons = {r["identifier"]: r["status_message"]
               for r in records(api, result["id"], status="rejected")}
    assert reasons == {f"lkp{i}@example.com": "HubSpot has no companies record with"
                       " company_key = 'co3' to associate" for i in (3, 7)}
    contact = {r["email"]: r["hs_object_id"] for r in hubspot.rows("contacts")}
    company = {r["company_key"]: r["hs_object_id"] for r in hubspot.rows("companies")}
    links = {(c, k) for kind, c, _, k in hubspot.associations if kind == "contacts"}
    assert links >= {(contact[f"lkp{i}@example.com"], company[f"co{i % 4}"])
                     for i in (1, 2, 4, 5, 6, 8)}
    assert not any(contact[f"lkp{i}@example.com"] == c for c, _ in links for i in (3, 7))


# --- Braze --------------------------------------------------------------------------------


def test_braze_users_mirror_and_events(api: httpx.Client, source: int,
                                       sql: psycopg.Connection) -> None:
    with BrazeFake() as braze:
        wrong = destination(api, "braze", braze.credentials(api_key="nope"))
        assert "Invalid API key" in first_step(wrong)["error"]["message"]
        dest = destination(api, "braze", braze.credentials())
        model_id = model(api, source, "SELECT id::text AS external_id, first, revenue"
                         " FROM people WHERE id <= 100", name="braze_users")
        sync_id = create_sync(api, source, model_id, dest["id"], "user", "mirror", [
            col("external_id", key=True), col("first", "first_name"), col("revenue")])
        assert run(api, sync_id)["records_updated"] == 100
        users = braze.by_external_id()
        assert {k: u.attributes for k, u in users.items()} == {
            str(i): {"first_name": f"First{i}", "revenue": i * 1000} for i in range(1, 101)}
        sql.execute("DELETE FROM people WHERE id = 50")
        try:
            assert run(api, sync_id)["records_processed"] == 1
            assert "50" not in braze.by_external_id() and len(braze.users) == 99
        finally:
            sql.execute("INSERT INTO people VALUES (%s, %s, %s, %s)", PEOPLE[49])
        events = model(api, source, "SELECT * FROM events", name="braze_events")
        event_sync = create_sync(api, source, events, dest["id"], "event", "append", [
            col("event_id", key=True), col("user_id", "external_id"), col("name"),
            col("plan")])
        assert run(api, event_sync)["records_updated"] == 5
        got = sorted((u.external_id, e["properties"]["event_id"], e["name"],
                      e["properties"]["plan"]) for u in braze.users for e in u.events)
        assert got == [(f"u{i % 3}", i, "Signed Up", "pro") for i in sorted(
            range(1, 6), key=lambda i: (f"u{i % 3}", i))]


# --- Segment ------------------------------------------------------------------------------


def test_segment_identify_and_track(api: httpx.Client, source: int) -> None:
    with SegmentFake() as segment:
        wrong = destination(api, "segment", segment.credentials(write_key="nope"))
        assert "Invalid write key" in first_step(wrong)["error"]["message"]
        dest = destination(api, "segment", segment.credentials())
        model_id = model(api, source, "SELECT email, first, revenue FROM people"
                         " WHERE id <= 40", name="segment_users")
        sync_id = create_sync(api, source, model_id, dest["id"], "identify", "upsert", [
            col("email", "user_id", key=True), col("first"), col("revenue")])
        assert run(api, sync_id)["records_updated"] == 40
        assert segment.users == {f"p{i}@example.com": {"first": f"First{i}",
                                                        "revenue": i * 1000}
                                 for i in range(1, 41)}
        events = model(api, source, "SELECT event_id, user_id, name, plan FROM events",
                       name="segment_events")
        track = create_sync(api, source, events, dest["id"], "track", "append", [
            col("event_id", key=True), col("user_id"), col("name", "event"), col("plan")])
        assert run(api, track)["records_updated"] == 5
        assert sorted((t["userId"], t["event"], t["properties"]["event_id"])
                      for t in segment.tracks) == sorted(
            (f"u{i % 3}", "Signed Up", i) for i in range(1, 6))
        assert run(api, track)["records_processed"] == 0  # nothing new to append
        assert len(segment.tracks) == 5
