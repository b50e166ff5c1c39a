"""The ``hubspot`` destination against the HubSpot fake (tests/support/fakes/hubspot.py):
the conformance suite, then what only HubSpot has: OAuth renewal, limits, per-record
errors, property creation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.hubspot import HubSpotConfig, HubSpotDestination
from reflow.connectors.errors import ObjectNotFound, TerminalError
from reflow.connectors.saas.auth import ReconnectRequired
from reflow.connectors.saas.client import QuotaExhausted
from reflow.connectors.saas.hooks import ConnectionHooks
from reflow.connectors.testing import DestinationConformance
from tests.support.fakes.hubspot import HubSpotFake, prop

SEED_PROPERTIES = [prop("id", "number", "number", unique=True), prop("name"),
                   prop("amount", "number", "number"), prop("active", "bool", "booleancheckbox")]


@pytest.fixture(scope="module")
def portal() -> Iterator[HubSpotFake]:
    # The limit is lifted here; the tests of pacing set it themselves.
    with HubSpotFake(rate_limit=None) as fake:
        fake.add_custom_object("seeds", SEED_PROPERTIES)
        yield fake


@pytest.fixture
def fresh(portal: HubSpotFake) -> Iterator[HubSpotFake]:
    with portal.lock:
        for obj in portal.objects.values():
            obj.records.clear()
            obj.index.clear()
        portal.rate_limit, portal.daily_limit, portal.daily_used = None, 250_000, 0
        portal.associations.clear()
    yield portal


def connector(portal: HubSpotFake, **overrides: Any) -> HubSpotDestination:
    dest = HubSpotDestination(HubSpotConfig.model_validate(portal.credentials(**overrides)))
    dest.client.backoff = 0.01  # blips are retried at once: the tests wait for nothing
    return dest


class TestHubSpotDestination(DestinationConformance):
    blank_is_null = True

    @pytest.fixture
    def destination(self, fresh: HubSpotFake) -> Iterator[HubSpotDestination]:
        dest = connector(fresh)
        yield dest
        dest.close()

    @pytest.fixture
    def object_name(self) -> str:
        return "seeds"

    @pytest.fixture
    def read_back(self, fresh: HubSpotFake) -> Callable[[], list[dict[str, Any]]]:
        # HubSpot returns null for a property without a value.
        return lambda: [{k: row.get(k) for k in ("id", "name", "amount", "active")}
                        for row in fresh.rows("seeds")]

    @pytest.fixture
    def bad_destination(self, fresh: HubSpotFake) -> Iterator[HubSpotDestination]:
        dest = connector(fresh, access_token="pat-na1-wrong")
        yield dest
        dest.close()


def write(dest: HubSpotDestination, rows: list[dict[str, Any]], action: str = "upsert",
          *, obj: str = "contacts", key: str = "email") -> list[tuple[int, str]]:
    batch = pa.RecordBatch.from_pylist(rows)
    ctx = WriteContext(sync_id=1, run_id=1, object_name=obj, key_field=key,
                       fields=tuple(batch.schema.names))
    writer = dest.open_writer(ctx)
    try:
        result = writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()
    return [(r.index, r.reason) for r in result.rejected]


def test_objects_fields_and_identifiers(fresh: HubSpotFake) -> None:
    dest = connector(fresh)
    names = [o.full_name for o in dest.list_objects()]
    assert names[:4] == ["contacts", "companies", "deals", "tickets"] and "seeds" in names
    contacts = dest.get_object("contacts")
    email, hs_id, revenue = (contacts.field(n) for n in ("email", "hs_object_id",
                                                          "annualrevenue"))
    assert email and email.identifier and email.createable
    assert hs_id and hs_id.identifier and not hs_id.createable and not hs_id.updateable
    assert revenue and revenue.type == "float" and not revenue.identifier
    with pytest.raises(ObjectNotFound, match="no_such"):
        dest.get_object("no_such")


def test_custom_objects_follow_the_schemas_cursor(fresh: HubSpotFake) -> None:
    fresh.add_custom_object("pets", [prop("tag", unique=True)])
    try:
        names = [o.full_name for o in connector(fresh).list_objects()]
        assert {"seeds", "pets"} <= set(names)  # the fake serves one schema a page
    finally:
        del fresh.objects["pets"]


def test_a_refused_record_is_rejected_alone_with_hubspots_message(fresh: HubSpotFake) -> None:
    rows = [{"email": f"u{i}@x.io", "firstname": f"U{i}"} for i in range(150)]
    rows[37]["email"] = "not-an-email"
    rejected = write(connector(fresh), rows)
    assert rejected == [(37, 'HubSpot: VALIDATION_ERROR: Property values were not valid: '
                             '[{"isValid": false, "message": "Email address not-an-email is '
                             'invalid", "error": "INVALID_EMAIL", "name": "email"}]')]
    assert len(fresh.rows("contacts")) == 149


def test_update_rejects_unknown_keys_with_object_not_found(fresh: HubSpotFake) -> None:
    dest = connector(fresh)
    write(dest, [{"email": "a@x.io", "firstname": "A"}])
    rejected = write(dest, [{"email": "a@x.io", "firstname": "B"},
                            {"email": "b@x.io", "firstname": "B"}], "update")
    assert [i for i, _ in rejected] == [1]
    assert "OBJECT_NOT_FOUND" in rejected[0][1]
    assert [r["firstname"] for r in fresh.rows("contacts")] == ["B"]


def test_blips_are_retried_and_nothing_is_lost(fresh: HubSpotFake) -> None:
    fresh.blips.arm(3, 502)
    rows = [{"email": f"u{i}@x.io"} for i in range(250)]
    assert write(connector(fresh), rows) == []
    assert len(fresh.rows("contacts")) == 250


def test_pacing_never_exceeds_the_window(fresh: HubSpotFake) -> None:
    fresh.rate_limit = (20, 1.0)  # HubSpot's 100 per 10 s, scaled down tenfold
    start = len(fresh.requests)
    rows = [{"email": f"p{i}@x.io"} for i in range(2500)]  # 25 requests
    assert write(connector(fresh), rows) == []
    assert fresh.throttled == 0
    fresh.requests[:] = fresh.requests[start:]
    assert fresh.peak_window(1.0) <= 20


def test_daily_quota_stops_the_writer_and_keeps_what_was_acknowledged(
    fresh: HubSpotFake,
) -> None:
    dest = connector(fresh)
    batch = pa.RecordBatch.from_pylist([{"email": f"q{i}@x.io"} for i in range(500)])
    ctx = WriteContext(sync_id=1, run_id=1, object_name="contacts", key_field="email",
                       fields=("email",))
    writer = dest.open_writer(ctx)
    fresh.daily_limit = fresh.daily_used + 3
    result = writer.write(batch, "upsert")
    assert len(fresh.rows("contacts")) == 300  # three requests of 100 arrived
    assert len(result.rejected) == 200
    assert all("daily limit" in r.reason for r in result.rejected)
    with pytest.raises(QuotaExhausted, match="You have reached your daily limit"):
        writer.close()


def test_wrong_token_fails_the_test_with_hubspots_message(fresh: HubSpotFake) -> None:
    steps = connector(fresh, access_token="pat-na1-wrong").test_connection()
    assert steps[-1].status == "failed"
    assert "Authentication credentials not found" in (steps[-1].message or "")


def oauth(fresh: HubSpotFake, saved: list[Any], failed: list[str],
          **overrides: Any) -> HubSpotDestination:
    dest = HubSpotDestination(HubSpotConfig.model_validate(fresh.oauth_credentials(**overrides)))
    dest.attach_hooks(ConnectionHooks(saved.append, failed.append))
    return dest


def test_oauth_renews_on_expiry_and_hands_the_token_back(fresh: HubSpotFake) -> None:
    saved: list[Any] = []
    failed: list[str] = []
    dest = oauth(fresh, saved, failed)
    assert write(dest, [{"email": "o@x.io"}]) == []
    assert len(saved) == 1 and saved[0]["access_token"].startswith("CJ-oauth-")
    assert saved[0]["access_token_expires_at"] > 0
    fresh.expire_tokens()  # HubSpot answers 401 EXPIRED_AUTHENTICATION: renewed, resent
    assert write(dest, [{"email": "o2@x.io"}]) == []
    assert len(saved) == 2 and saved[1]["access_token"] != saved[0]["access_token"]
    # A stored, still valid token is used as is: no renewal.
    again = oauth(fresh, saved, failed, access_token=saved[1]["access_token"],
                  access_token_expires_at=saved[1]["access_token_expires_at"])
    again.verify()
    assert len(saved) == 2 and failed == []


def test_revoked_refresh_token_says_to_reconnect(fresh: HubSpotFake) -> None:
    saved: list[Any] = []
    failed: list[str] = []
    dest = oauth(fresh, saved, failed, refresh_token="revoked")
    with pytest.raises(ReconnectRequired, match="Reconnect the destination"):
        dest.verify()
    assert failed and "BAD_REFRESH_TOKEN: missing or unknown refresh token" in failed[0]


def test_create_field_adds_a_hubspot_property(fresh: HubSpotFake) -> None:
    dest = connector(fresh)
    created = dest.create_field("contacts", "loyalty_points", "integer")
    assert created.type == "float" and created.createable
    assert dest.get_object("contacts").field("loyalty_points") is not None
    with pytest.raises(TerminalError, match="already exists"):
        dest.create_field("contacts", "loyalty_points", "integer")
    del fresh.objects["contacts"].properties[-1]


def test_a_lookup_to_companies_becomes_an_association(fresh: HubSpotFake) -> None:
    dest = connector(fresh)
    companies = [{"company_key": f"c{i}", "name": f"Co {i}"} for i in range(3)]
    assert write(dest, companies, obj="companies", key="company_key") == []
    field = dest.get_object("contacts").field("associated_company")
    assert field is not None and field.lookup_object == "companies"
    contacts = [{"email": "a@x.io", "associated_company": "c1"},
                {"email": "b@x.io", "associated_company": "c2"},
                {"email": "c@x.io", "associated_company": "c9"},
                {"email": "d@x.io", "associated_company": None}]
    batch = pa.RecordBatch.from_pylist(contacts)
    ctx = WriteContext(sync_id=1, run_id=1, object_name="contacts", key_field="email",
                       fields=tuple(batch.schema.names),
                       lookups={"associated_company": ("companies", "company_key")})
    writer = dest.open_writer(ctx)
    result = writer.write(batch, "upsert")
    writer.close()
    assert [(r.index, r.reason) for r in result.rejected] == [
        (2, "HubSpot has no companies record with company_key = 'c9' to associate")]
    ids = {r["email"]: r["hs_object_id"] for r in fresh.rows("contacts")}
    company = {r["company_key"]: r["hs_object_id"] for r in fresh.rows("companies")}
    assert sorted(fresh.associations) == sorted([
        ("contacts", ids["a@x.io"], "companies", company["c1"]),
        ("contacts", ids["b@x.io"], "companies", company["c2"])])
    assert all("associated_company" not in r for r in fresh.rows("contacts"))


def test_sync_null_values_false_keeps_the_property(fresh: HubSpotFake) -> None:
    dest = connector(fresh)
    write(dest, [{"email": "k@x.io", "firstname": "Kim", "lastname": "Lee"}])
    batch = pa.RecordBatch.from_pylist([{"email": "k@x.io", "firstname": None,
                                         "lastname": None}])
    ctx = WriteContext(sync_id=1, run_id=2, object_name="contacts", key_field="email",
                       fields=("email", "firstname", "lastname"),
                       keep_on_null=frozenset({"firstname"}))
    writer = dest.open_writer(ctx)
    writer.write(batch, "upsert")
    writer.close()
    row = fresh.rows("contacts")[0]
    assert row.get("firstname") == "Kim" and "lastname" not in row  # "" cleared lastname
