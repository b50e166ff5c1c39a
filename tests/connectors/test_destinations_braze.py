"""The ``braze`` destination against the Braze fake (tests/support/fakes/braze.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.braze import BrazeConfig, BrazeDestination
from reflow.connectors.testing import DestinationConformance
from tests.support.fakes.braze import BrazeFake


@pytest.fixture(scope="module")
def workspace() -> Iterator[BrazeFake]:
    with BrazeFake() as fake:
        yield fake


@pytest.fixture
def fresh(workspace: BrazeFake) -> BrazeFake:
    workspace.clear()
    workspace.track_limit = None
    return workspace


def connector(fake: BrazeFake, **overrides: Any) -> BrazeDestination:
    dest = BrazeDestination(BrazeConfig.model_validate(fake.credentials(**overrides)))
    dest.client.backoff = 0.01
    return dest


class TestBrazeDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, fresh: BrazeFake) -> Iterator[BrazeDestination]:
        dest = connector(fresh)
        yield dest
        dest.close()

    @pytest.fixture
    def object_name(self) -> str:
        return "user"

    @pytest.fixture
    def read_back(self, fresh: BrazeFake) -> Callable[[], list[dict[str, Any]]]:
        # A removed (null) attribute reads back as absent: null.
        return lambda: [{"id": ext, **{k: u.attributes.get(k) for k in ("name", "amount",
                                                                          "active")}}
                        for ext, u in fresh.by_external_id().items()]

    @pytest.fixture
    def bad_destination(self, fresh: BrazeFake) -> Iterator[BrazeDestination]:
        dest = connector(fresh, api_key="wrong-key")
        yield dest
        dest.close()


def write(dest: BrazeDestination, rows: list[dict[str, Any]], action: str, obj: str,
          key: str) -> list[tuple[int, str]]:
    batch = pa.RecordBatch.from_pylist(rows)
    ctx = WriteContext(sync_id=1, run_id=1, object_name=obj, key_field=key,
                       fields=tuple(batch.schema.names))
    writer = dest.open_writer(ctx)
    try:
        result = writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()
    return [(r.index, r.reason) for r in result.rejected]


def test_minor_errors_reject_only_the_named_object(fresh: BrazeFake) -> None:
    rows = [{"external_id": f"u{i}", "email": f"u{i}@x.io"} for i in range(160)]
    rows[80]["email"] = "nope"
    rejected = write(connector(fresh), rows, "upsert", "user", "external_id")
    assert rejected == [(80, "Braze: Invalid 'email' field: 'nope' is not a valid email address")]
    assert len(fresh.users) == 159
    assert max(n for _, n in fresh.requests) == 75  # 75 objects a request at most


def test_events_and_purchases_append_with_properties(fresh: BrazeFake) -> None:
    dest = connector(fresh)
    events = [{"event_id": i, "external_id": "u1", "name": "Signed Up",
               "time": "2026-01-02T03:04:05Z", "plan": "pro"} for i in range(3)]
    assert write(dest, events, "append", "event", "event_id") == []
    user = fresh.by_external_id()["u1"]
    assert user.events[0] == {"name": "Signed Up", "time": "2026-01-02T03:04:05Z",
                              "properties": {"event_id": 0, "plan": "pro"}}
    purchases = [{"order_id": "o1", "external_id": "u1", "product_id": "sku", "price": 9.5}]
    assert write(dest, purchases, "append", "purchase", "order_id") == []
    assert user.purchases[0]["currency"] == "USD" and user.purchases[0]["price"] == 9.5
    nobody = [{"event_id": 9, "name": "x"}]
    assert [i for i, _ in write(dest, nobody, "append", "event", "event_id")] == [0]


def test_users_by_alias_and_email_and_their_deletion(fresh: BrazeFake) -> None:
    dest = connector(fresh)
    rows = [{"user_alias": f"crm-{i}", "first_name": f"F{i}"} for i in range(120)]
    assert write(dest, rows, "upsert", "user", "user_alias") == []
    assert {u.alias for u in fresh.users} == {("reflow", f"crm-{i}") for i in range(120)}
    assert write(dest, rows[:60], "delete", "user", "user_alias") == []
    assert len(fresh.users) == 60
    assert max(n for p, n in fresh.requests if p == "/users/delete") == 50


def test_rate_limit_429_waits_for_the_reset_and_loses_nothing(fresh: BrazeFake) -> None:
    fresh.track_limit = (4, 1.0)
    rows = [{"external_id": f"r{i}"} for i in range(75 * 6)]
    assert write(connector(fresh), rows, "upsert", "user", "external_id") == []
    assert len(fresh.users) == 450


def test_wrong_key_fails_with_brazes_message(fresh: BrazeFake) -> None:
    steps = connector(fresh, api_key="wrong-key").test_connection()
    assert steps[-1].status == "failed" and "Invalid API key" in (steps[-1].message or "")


def test_sync_null_values_false_keeps_the_attribute(fresh: BrazeFake) -> None:
    dest = connector(fresh)
    write(dest, [{"external_id": "k", "plan": "pro", "city": "Lyon"}], "upsert", "user",
          "external_id")
    batch = pa.RecordBatch.from_pylist([{"external_id": "k", "plan": None, "city": None}])
    ctx = WriteContext(sync_id=1, run_id=2, object_name="user", key_field="external_id",
                       fields=("external_id", "plan", "city"), keep_on_null=frozenset({"plan"}))
    writer = dest.open_writer(ctx)
    writer.write(batch, "upsert")
    writer.close()
    assert fresh.by_external_id()["k"].attributes == {"plan": "pro"}  # city removed by null
