"""The ``segment`` destination against the Segment fake (tests/support/fakes/segment.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.segment import SegmentConfig, SegmentDestination
from reflow.connectors.testing import DestinationConformance
from tests.support.fakes.segment import MAX_BATCH, SegmentFake


@pytest.fixture(scope="module")
def source_api() -> Iterator[SegmentFake]:
    with SegmentFake() as fake:
        yield fake


@pytest.fixture
def fresh(source_api: SegmentFake) -> SegmentFake:
    source_api.clear()
    return source_api


def connector(fake: SegmentFake, **overrides: Any) -> SegmentDestination:
    dest = SegmentDestination(SegmentConfig.model_validate(fake.credentials(**overrides)))
    dest.client.backoff = 0.01
    return dest


class TestSegmentDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, fresh: SegmentFake) -> Iterator[SegmentDestination]:
        dest = connector(fresh)
        yield dest
        dest.close()

    @pytest.fixture
    def object_name(self) -> str:
        return "identify"

    @pytest.fixture
    def read_back(self, fresh: SegmentFake) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [{"id": uid, **traits} for uid, traits in fresh.users.items()]

    @pytest.fixture
    def bad_destination(self, fresh: SegmentFake) -> Iterator[SegmentDestination]:
        dest = connector(fresh, write_key="wrong")
        yield dest
        dest.close()


def write(dest: SegmentDestination, rows: list[dict[str, Any]], action: str, obj: str,
          key: str, run_id: int = 1) -> list[tuple[int, str]]:
    batch = pa.RecordBatch.from_pylist(rows)
    ctx = WriteContext(sync_id=1, run_id=run_id, object_name=obj, key_field=key,
                       fields=tuple(batch.schema.names))
    writer = dest.open_writer(ctx)
    try:
        result = writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()
    return [(r.index, r.reason) for r in result.rejected]


def test_a_message_over_32_kb_is_rejected_and_batches_stay_under_500_kb(
    fresh: SegmentFake,
) -> None:
    rows = [{"user_id": f"u{i}", "bio": "x" * 3000} for i in range(400)]
    rows[7]["bio"] = "y" * 40_000
    rejected = write(connector(fresh), rows, "upsert", "identify", "user_id")
    assert rejected == [(7, "Segment accepts messages of at most 32 KB; this record's is 39.2 KB")]
    assert len(fresh.users) == 399
    assert len(fresh.batches) >= 3 and max(fresh.batches) <= MAX_BATCH


def test_track_and_group(fresh: SegmentFake) -> None:
    dest = connector(fresh)
    events = [{"event_id": i, "event": "Order Completed", "user_id": "u1", "total": i * 2.5}
              for i in range(3)]
    assert write(dest, events, "append", "track", "event_id") == []
    assert [t["properties"] for t in fresh.tracks] == [
        {"event_id": i, "total": i * 2.5} for i in range(3)]
    assert {t["event"] for t in fresh.tracks} == {"Order Completed"}
    groups = [{"group_id": "acme", "user_id": "u1", "plan": "enterprise"}]
    assert write(dest, groups, "upsert", "group", "group_id") == []
    assert fresh.groups == {"acme": {"plan": "enterprise"}}
    assert fresh.memberships == {("u1", "acme")}


def test_a_resent_batch_is_deduplicated_by_message_id(fresh: SegmentFake) -> None:
    dest = connector(fresh)
    events = [{"event_id": 1, "event": "Clicked", "user_id": "u1"}]
    write(dest, events, "append", "track", "event_id")
    write(dest, events, "append", "track", "event_id")  # the engine retrying the batch
    assert len(fresh.tracks) == 1
    write(dest, events, "append", "track", "event_id", run_id=2)  # a new run's event
    assert len(fresh.tracks) == 2


def test_throttling_and_blips_are_retried(fresh: SegmentFake) -> None:
    fresh.throttle = 2
    fresh.blips.arm(2, 503)
    rows = [{"user_id": f"t{i}"} for i in range(10)]
    assert write(connector(fresh), rows, "upsert", "identify", "user_id") == []
    assert len(fresh.users) == 10


def test_wrong_write_key_fails_with_segments_message(fresh: SegmentFake) -> None:
    steps = connector(fresh, write_key="wrong").test_connection()
    assert steps[-1].status == "failed" and "Invalid write key" in (steps[-1].message or "")


def test_sync_null_values_false_leaves_the_trait_out(fresh: SegmentFake) -> None:
    dest = connector(fresh)
    write(dest, [{"user_id": "k", "plan": "pro", "city": "Lyon"}], "upsert", "identify",
          "user_id")
    batch = pa.RecordBatch.from_pylist([{"user_id": "k", "plan": None, "city": None}])
    ctx = WriteContext(sync_id=1, run_id=2, object_name="identify", key_field="user_id",
                       fields=("user_id", "plan", "city"), keep_on_null=frozenset({"plan"}))
    writer = dest.open_writer(ctx)
    writer.write(batch, "upsert")
    writer.close()
    assert fresh.users["k"] == {"plan": "pro", "city": None}
