"""The ``salesforce`` destination against the Salesforce fake
(tests/support/fakes/salesforce.py): the conformance suite, then what only Salesforce
has: describe-driven objects, lookups by external id, the Bulk API 2.0 path, token
renewal kept through the connection's hooks, the daily limit, preserve/null handling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.salesforce import SalesforceConfig, SalesforceDestination
from reflow.connectors.errors import BatchRejected, ObjectNotFound
from reflow.connectors.saas.auth import ReconnectRequired
from reflow.connectors.saas.client import QuotaExhausted
from reflow.connectors.saas.hooks import ConnectionHooks
from reflow.connectors.testing import DestinationConformance
from tests.support.fakes.salesforce import SalesforceFake, SalesforceOrg, seed_object

SEED_NAMES = {"id": "Seed_Key__c", "name": "Name", "amount": "Amount__c", "active": "Active__c"}


@pytest.fixture(scope="module")
def server() -> Iterator[SalesforceFake]:
    with SalesforceFake() as fake:
        fake.org.objects["Seed__c"] = seed_object()
        yield fake


@pytest.fixture
def org(server: SalesforceFake) -> Iterator[SalesforceOrg]:
    org = server.org
    with org.lock:
        org.records.clear()
        org.rules.clear()
        org.requests.clear()
        org.jobs.clear()
        org.api_limit, org.api_usage, org.query_page_size = 100_000, 0, 2000
        org.refresh_tokens = {"5Aep-refresh-token"}
    yield org


def connector(server: SalesforceFake, hooks: ConnectionHooks | None = None,
              **overrides: Any) -> SalesforceDestination:
    dest = SalesforceDestination(SalesforceConfig.model_validate(server.credentials(**overrides)))
    if hooks is not None:  # as the service does: before the client exists
        dest.attach_hooks(hooks)
    dest.client.backoff = 0.01  # blips are retried at once: the tests wait for nothing
    dest.bulk_poll_seconds = 0.01
    return dest


class TestSalesforceDestination(DestinationConformance):
    blank_is_null = True
    field_names = SEED_NAMES

    @pytest.fixture
    def destination(self, server: SalesforceFake, org: SalesforceOrg
                    ) -> Iterator[SalesforceDestination]:
        dest = connector(server)
        yield dest
        dest.close()

    @pytest.fixture
    def object_name(self) -> str:
        return "Seed__c"

    @pytest.fixture
    def read_back(self, org: SalesforceOrg) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [{seed: row.get(name) for seed, name in SEED_NAMES.items()}
                        for row in org.rows("Seed__c")]

    @pytest.fixture
    def bad_destination(self, server: SalesforceFake, org: SalesforceOrg
                        ) -> Iterator[SalesforceDestination]:
        dest = connector(server, client_secret="wrong")
        yield dest
        dest.close()


def write(dest: SalesforceDestination, rows: list[dict[str, Any]], action: str = "upsert",
          *, obj: str = "Contact", key: str = "External_Id__c",
          **ctx: Any) -> list[tuple[int, str]]:
    batch = pa.RecordBatch.from_pylist(rows)
    context = WriteContext(sync_id=1, run_id=1, object_name=obj, key_field=key,
                           fields=tuple(batch.schema.names), **ctx)
    writer = dest.open_writer(context)
    try:
        result = writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()
    return [(r.index, r.reason) for r in result.rejected]


def accounts(dest: SalesforceDestination, *keys: str) -> None:
    assert write(dest, [{"External_Id__c": k, "Name": f"Account {k}"} for k in keys],
                 obj="Account") == []


def test_objects_fields_identifiers_and_references(server: SalesforceFake,
                                                   org: SalesforceOrg) -> None:
    dest = connector(server)
    names = [o.full_name for o in dest.list_objects()]
    assert {"Account", "Contact", "Lead", "Thing__c"} <= set(names)
    contact = dest.get_object("Contact")
    ident, ext, account, last = (contact.field(n) for n in
                                 ("Id", "External_Id__c", "AccountId", "LastName"))
    assert ident and ident.identifier and not ident.createable
    assert ext and ext.identifier and not (account and account.identifier)
    assert account and account.lookup_object == "Account"
    assert last and last.required
    thing = dest.get_object("Thing__c")
    assert (thing.field("Account__c") or account).lookup_object == "Account"
    assert set(thing.supported_operations) == {"upsert", "update", "insert", "mirror", "delete"}
    with pytest.raises(ObjectNotFound, match="Nope__c"):
        dest.get_object("Nope__c")


def test_lookup_fills_the_reference_by_the_parents_external_id(
        server: SalesforceFake, org: SalesforceOrg) -> None:
    dest = connector(server)
    accounts(dest, "A-1", "A-2")
    lookups = {"AccountId": ("Account", "External_Id__c")}
    rows = [{"External_Id__c": "C-1", "LastName": "One", "AccountId": "A-1"},
            {"External_Id__c": "C-2", "LastName": "Two", "AccountId": "A-9"},
            {"External_Id__c": "C-3", "LastName": "Three", "AccountId": None}]
    rejected = write(dest, rows, lookups=lookups)
    assert rejected == [(1, "INVALID_FIELD: Foreign key external ID: A-9 not found for field"
                            " External_Id__c in entity Account (AccountId)")]
    account_ids = {k: r["Id"] for k, r in org.by("Account", "External_Id__c").items()}
    contacts = org.by("Contact", "External_Id__c")
    assert contacts["C-1"]["AccountId"] == account_ids["A-1"]
    assert contacts["C-3"]["AccountId"] is None and "C-2" not in contacts
    sent = [r for r in org.requests_to("/composite/sobjects/Contact/External_Id__c")]
    assert len(sent) == 1  # three records, one sObject Collections upsert


def test_large_batches_go_through_bulk_api_and_map_results_back(
        server: SalesforceFake, org: SalesforceOrg) -> None:
    dest = connector(server)
    accounts(dest, "A-1")
    rows = [{"External_Id__c": f"C-{i}", "LastName": f"L{i}", "Email": f"c{i}@x.io",
             "AccountId": "A-1"} for i in range(500)]
    rows[17]["Email"] = "not-an-email"
    rows[401]["LastName"] = None
    rejected = write(dest, rows, lookups={"AccountId": ("Account", "External_Id__c")},
                     options={"bulk_threshold": 300})
    assert rejected == [
        (17, "INVALID_EMAIL_ADDRESS: Email: invalid email address: not-an-email (Email)"),
        (401, "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (LastName)"),
    ]
    contacts = org.by("Contact", "External_Id__c")
    assert len(contacts) == 498 and contacts["C-499"]["Email"] == "c499@x.io"
    assert not org.requests_to("/composite/sobjects/Contact")  # one job, no collections
    assert len(org.requests_to("/jobs/ingest")) >= 5  # create, upload, close, poll, results


def test_update_and_delete_by_external_id_find_the_records(
        server: SalesforceFake, org: SalesforceOrg) -> None:
    dest = connector(server)
    accounts(dest, "A-1", "A-2", "A-3")
    rejected = write(dest, [{"External_Id__c": "A-1", "Name": "Renamed"},
                            {"External_Id__c": "A-7", "Name": "Unknown"}],
                     "update", obj="Account")
    assert rejected == [(1, "NOT_FOUND: no Account with External_Id__c = 'A-7'")]
    assert org.by("Account", "External_Id__c")["A-1"]["Name"] == "Renamed"
    assert write(dest, [{"External_Id__c": "A-2"}, {"External_Id__c": "A-8"}], "delete",
                 obj="Account") == []
    assert sorted(org.by("Account", "External_Id__c")) == ["A-1", "A-3"]


def test_query_answers_are_followed_page_by_page(server: SalesforceFake,
                                                 org: SalesforceOrg) -> None:
    dest = connector(server)
    keys = [f"A-{i}" for i in range(150)]
    accounts(dest, *keys)
    org.query_page_size = 40  # 150 keys in one query: four pages
    rows = [{"External_Id__c": k, "Name": "Renamed"} for k in keys + ["A-999"]]
    assert write(dest, rows, "update", obj="Account") == [
        (150, "NOT_FOUND: no Account with External_Id__c = 'A-999'")]
    assert {r["Name"] for r in org.rows("Account")} == {"Renamed"}
    assert len(org.requests_to("/query/")) == 3


def test_bulk_update_delete_and_create_by_external_id(server: SalesforceFake,
                                                      org: SalesforceOrg) -> None:
    dest = connector(server)
    bulk = {"options": {"bulk_threshold": 1}}
    assert write(dest, [{"External_Id__c": f"A-{i}", "Name": f"N{i}"} for i in range(5)],
                 "insert", obj="Account", **bulk) == []
    assert write(dest, [{"External_Id__c": "A-1", "Name": "Changed"},
                        {"External_Id__c": "A-7", "Name": "New"}],
                 "insert", obj="Account", **bulk) == []  # create never overwrites
    assert write(dest, [{"External_Id__c": "A-2", "Name": "Renamed"},
                        {"External_Id__c": "A-8", "Name": "Nobody"}],
                 "update", obj="Account", **bulk) == [
        (1, "NOT_FOUND: no Account with External_Id__c = 'A-8'")]
    assert write(dest, [{"External_Id__c": "A-3"}, {"External_Id__c": "A-9"}], "delete",
                 obj="Account", **bulk) == []
    names = {k: r["Name"] for k, r in org.by("Account", "External_Id__c").items()}
    assert names == {"A-0": "N0", "A-1": "N1", "A-2": "Renamed", "A-4": "N4", "A-7": "New"}
    assert [j.operation for j in org.jobs.values()] == ["insert", "insert", "update", "delete"]
    assert not org.requests_to("/composite/sobjects")


def test_a_failed_bulk_job_refuses_the_batch_with_salesforces_message(
        server: SalesforceFake, org: SalesforceOrg) -> None:
    # The engine splits a refused batch: below the threshold its parts go through
    # sObject Collections, which name the record.
    with pytest.raises(BatchRejected, match="InvalidBatch : Field name not found : Colour__c"):
        write(connector(server), [{"External_Id__c": "A-1", "Name": "n", "Colour__c": "red"}],
              obj="Account", options={"bulk_threshold": 1})
    assert [j.state for j in org.jobs.values()] == ["Failed"]


def test_nulls_left_out_and_set_if_empty(server: SalesforceFake, org: SalesforceOrg) -> None:
    dest = connector(server)
    write(dest, [{"External_Id__c": "C-1", "LastName": "L", "FirstName": "Ada",
                  "Email": None}])
    rows = [{"External_Id__c": "C-1", "LastName": "L", "FirstName": None,
             "Email": "ada@x.io"},
            {"External_Id__c": "C-2", "LastName": "M", "FirstName": None, "Email": "m@x.io"}]
    for bulk in (False, True):
        options = {"bulk_threshold": 1 if bulk else 1000}
        assert write(dest, rows, keep_on_null=frozenset({"FirstName"}),
                     set_if_empty=frozenset({"Email"}), options=options) == []
        contacts = org.by("Contact", "External_Id__c")
        assert contacts["C-1"]["FirstName"] == "Ada"  # a null did not overwrite
        assert contacts["C-1"]["Email"] == "ada@x.io"  # written: it was empty
        rows = [dict(r, Email="other@x.io") for r in rows]
    assert org.by("Contact", "External_Id__c")["C-2"]["Email"] == "m@x.io"  # kept


def test_expired_session_is_renewed_and_kept(server: SalesforceFake, org: SalesforceOrg) -> None:
    saved: list[dict[str, Any]] = []
    dest = connector(server, ConnectionHooks(save_credentials=lambda c: saved.append(dict(c))))
    accounts(dest, "A-1")
    org.expire_tokens()
    accounts(dest, "A-2")
    tokens = [c["access_token"] for c in saved if "access_token" in c]
    assert len(tokens) == 2 and tokens[-1] in org.tokens
    assert {"instance_url": server.url} in saved


def test_revoked_refresh_token_says_to_reconnect(server: SalesforceFake,
                                                 org: SalesforceOrg) -> None:
    failed: list[str] = []
    dest = connector(server, ConnectionHooks(mark_failed=failed.append))
    org.revoke_refresh_tokens()
    steps = dest.test_connection()
    assert steps[-1].status == "failed"
    assert "invalid_grant: expired access/refresh token" in (steps[-1].message or "")
    assert "Reconnect" in (steps[-1].message or "") and failed
    with pytest.raises(ReconnectRequired):
        write(connector(server), [{"External_Id__c": "A-1", "Name": "x"}], obj="Account")


def test_daily_limit_stops_the_writer(server: SalesforceFake, org: SalesforceOrg) -> None:
    dest = connector(server)
    dest.get_object("Account")
    org.api_limit = org.api_usage + 1  # one more request: the first collection of 200
    rows = [{"External_Id__c": f"A-{i}", "Name": "n"} for i in range(400)]
    with pytest.raises(QuotaExhausted, match="REQUEST_LIMIT_EXCEEDED"):
        write(dest, rows, obj="Account")
    assert len(org.rows("Account")) == 200


def test_a_server_blip_is_retried(server: SalesforceFake, org: SalesforceOrg) -> None:
    dest = connector(server)
    dest.get_object("Account")
    org.blip(2, 503)
    accounts(dest, "A-1")
    assert list(org.by("Account", "External_Id__c")) == ["A-1"]
