"""The conformance suites every connector passes.

Use them from a test module by subclassing and providing fixtures::

    class TestPostgresSource(SourceConformance):
        @pytest.fixture
        def source(self, ...): ...          # a connector whose server holds SEED_ROWS
        @pytest.fixture
        def seeded_table(self, ...): ...    # TableRef of that table
        @pytest.fixture
        def bad_source(self, ...): ...      # same type, credentials that cannot log in

    class TestPostgresDestination(DestinationConformance):
        @pytest.fixture
        def destination(self, ...): ...     # a connector against a real server
        @pytest.fixture
        def object_name(self, ...): ...     # an empty object keyed by "id" with the
                                            # fields of SEED_SCHEMA
        @pytest.fixture
        def read_back(self, ...): ...       # () -> list of dicts of what arrived
        @pytest.fixture
        def bad_destination(self, ...): ... # credentials that cannot log in

The suites talk to real systems; nothing here is mocked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pyarrow as pa
import pytest

from reflow.connectors.base import (
    DestinationConnector,
    SourceConnector,
    TableRef,
    WriteContext,
)
from reflow.connectors.errors import InvalidQuery, ObjectNotFound

#: Rows every source fixture table holds: awkward text on purpose.
SEED_ROWS: list[dict[str, Any]] = [
    {"id": 1, "name": "Ada", "amount": 10.5, "active": True},
    {"id": 2, "name": 'quote " and, comma', "amount": -1.25, "active": False},
    {"id": 3, "name": "line\nbreak", "amount": 0.0, "active": True},
    {"id": 4, "name": "", "amount": None, "active": None},
    {"id": 5, "name": None, "amount": 1e6, "active": False},
    {"id": 6, "name": "ünïcødé ✓", "amount": 3.0, "active": True},
]

SEED_SCHEMA = pa.schema(
    [("id", pa.int64()), ("name", pa.string()), ("amount", pa.float64()), ("active", pa.bool_())]
)


def seed_batch(rows: list[dict[str, Any]] | None = None) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows if rows is not None else SEED_ROWS, schema=SEED_SCHEMA)


def _normalise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        clean = {}
        for key, value in row.items():
            key = key.lower()
            if key not in SEED_SCHEMA.names:
                continue
            if key == "id" and value is not None:
                value = int(value)
            if key == "amount" and value is not None:
                value = float(value)
            if key == "active" and value is not None and not isinstance(value, bool):
                value = str(value).lower() in ("1", "true", "t")
            clean[key] = value
        out.append(clean)
    return sorted(out, key=lambda r: r["id"])


class SourceConformance:
    """Behaviour every source connector shares."""

    def test_connection_succeeds(self, source: SourceConnector) -> None:
        steps = source.test_connection()
        assert steps, "a test reports at least one step"
        assert steps[0].step == "Verify connectivity"
        assert all(s.status in ("success", "warning") for s in steps), steps

    def test_bad_credentials_fail_with_the_systems_message(
        self, bad_source: SourceConnector
    ) -> None:
        steps = bad_source.test_connection()
        assert steps[-1].status == "failed"
        assert steps[-1].message
        assert [s.status for s in steps[:-1]] == ["success"] * (len(steps) - 1)

    def test_lists_the_seeded_table(
        self, source: SourceConnector, seeded_table: TableRef
    ) -> None:
        names = {(t.schema.lower(), t.name.lower()) for t in source.list_tables()}
        assert (seeded_table.schema.lower(), seeded_table.name.lower()) in names

    def test_columns_of_the_seeded_table(
        self, source: SourceConnector, seeded_table: TableRef
    ) -> None:
        columns = [c.name.lower() for c in source.list_columns(seeded_table)]
        assert columns == SEED_SCHEMA.names

    def test_unknown_table_is_object_not_found(
        self, source: SourceConnector, seeded_table: TableRef
    ) -> None:
        missing = TableRef(seeded_table.catalog, seeded_table.schema, "no_such_table_x")
        with pytest.raises(ObjectNotFound):
            source.list_columns(missing)

    def test_reads_every_row_faithfully(
        self, source: SourceConnector, seeded_table: TableRef
    ) -> None:
        batches = list(source.read(source.table_query(seeded_table)))
        assert all(isinstance(b, pa.RecordBatch) for b in batches)
        rows = [r for b in batches for r in b.to_pylist()]
        assert _normalise(rows) == _normalise(SEED_ROWS)

    def test_batches_respect_batch_size(
        self, source: SourceConnector, seeded_table: TableRef
    ) -> None:
        batches = list(source.read(source.table_query(seeded_table), batch_size=4))
        assert sum(b.num_rows for b in batches) == len(SEED_ROWS)
        assert all(b.num_rows <= 4 for b in batches)

    def test_query_columns_without_reading(
        self, source: SourceConnector, seeded_table: TableRef
    ) -> None:
        sql = f"SELECT id, name FROM ({source.table_query(seeded_table)}) AS t"
        assert [c.name.lower() for c in source.query_columns(sql)] == ["id", "name"]

    def test_bad_query_is_invalid_query_with_message(self, source: SourceConnector) -> None:
        with pytest.raises(InvalidQuery) as info:
            source.query_columns("SELECT * FROM no_such_table_at_all")
        assert str(info.value)

    def test_model_sql_cannot_write(
        self, source: SourceConnector, seeded_table: TableRef
    ) -> None:
        table = source.table_query(seeded_table).removeprefix("SELECT * FROM ")
        with pytest.raises(InvalidQuery):
            list(source.read(f"DELETE FROM {table}"))
        rows = [r for b in source.read(source.table_query(seeded_table)) for r in b.to_pylist()]
        assert len(rows) == len(SEED_ROWS)


class DestinationConformance:
    """Behaviour every destination connector shares.

    ``merges`` is False for destinations that only append
    (files, brokers, HTTP): they are checked for delivery, not for merge semantics.
    """

    merges: ClassVar[bool] = True
    #: The destination keeps no difference between an empty string and no value (HubSpot,
    #: Salesforce and Braze clear a field with ""): the two compare equal.
    blank_is_null: ClassVar[bool] = False
    #: The destination's name of each seed field, where its naming rules forbid the seed
    #: names (Salesforce custom fields end in ``__c`` and ``Id`` is its own record id).
    #: The batch is written under these names; ``read_back`` returns the seed names.
    field_names: ClassVar[dict[str, str]] = {}

    def _normalise(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = _normalise(rows)
        if self.blank_is_null:
            out = [{k: None if v == "" else v for k, v in row.items()} for row in out]
        return out

    def _write(
        self,
        destination: DestinationConnector,
        object_name: str,
        batch: pa.RecordBatch,
        action: str,
        run_id: int = 1,
    ) -> list[int]:
        """Write one batch; returns the indices of rejected records."""
        names = [self.field_names.get(n, n) for n in batch.schema.names]
        batch = pa.RecordBatch.from_arrays(batch.columns, names=names)
        ctx = WriteContext(
            sync_id=1,
            run_id=run_id,
            object_name=object_name,
            key_field=self.field_names.get("id", "id"),
            fields=tuple(batch.schema.names),
        )
        writer = destination.open_writer(ctx)
        try:
            result = writer.write(batch, action)  # type: ignore[arg-type]
        finally:
            writer.close()
        return sorted(r.index for r in result.rejected)

    def test_connection_succeeds(self, destination: DestinationConnector) -> None:
        steps = destination.test_connection()
        assert steps[0].step == "Verify connectivity"
        assert all(s.status in ("success", "warning") for s in steps), steps

    def test_bad_credentials_fail_with_the_systems_message(
        self, bad_destination: DestinationConnector
    ) -> None:
        steps = bad_destination.test_connection()
        assert steps[-1].status == "failed"
        assert steps[-1].message

    def test_object_is_listed_with_its_fields(
        self, destination: DestinationConnector, object_name: str
    ) -> None:
        obj = destination.get_object(object_name)
        names = {f.full_name.lower() for f in obj.fields}
        if not obj.allow_custom_fields:
            assert {self.field_names.get(n, n).lower() for n in SEED_SCHEMA.names} <= names
        assert set(obj.supported_operations) <= {
            "upsert", "update", "insert", "mirror", "append", "delete"
        }
        assert obj.supported_operations

    def test_unknown_object_is_object_not_found(self, destination: DestinationConnector) -> None:
        if type(destination).capabilities.file_system:
            pytest.skip("a file destination's object is a path template: any name is valid")
        with pytest.raises(ObjectNotFound):
            destination.get_object("no_such_object_x")

    def test_upsert_delivers_every_record(
        self,
        destination: DestinationConnector,
        object_name: str,
        read_back: Callable[[], list[dict[str, Any]]],
    ) -> None:
        action = "upsert" if "upsert" in type(destination).capabilities.operations else "append"
        assert self._write(destination, object_name, seed_batch(), action) == []
        assert self._normalise(read_back()) == self._normalise(SEED_ROWS)

    def test_upsert_twice_is_idempotent_and_updates(
        self,
        destination: DestinationConnector,
        object_name: str,
        read_back: Callable[[], list[dict[str, Any]]],
    ) -> None:
        if not self.merges:
            pytest.skip("destination only appends")
        self._write(destination, object_name, seed_batch(), "upsert")
        changed = [dict(r, name="changed") if r["id"] == 1 else r for r in SEED_ROWS]
        self._write(destination, object_name, seed_batch(changed), "upsert", run_id=2)
        assert self._normalise(read_back()) == self._normalise(changed)

    def test_delete_removes_only_given_keys(
        self,
        destination: DestinationConnector,
        object_name: str,
        read_back: Callable[[], list[dict[str, Any]]],
    ) -> None:
        if not self.merges or "delete" not in type(destination).capabilities.operations:
            pytest.skip("destination cannot delete")
        self._write(destination, object_name, seed_batch(), "upsert")
        self._write(destination, object_name, seed_batch(SEED_ROWS[:2]), "delete", run_id=2)
        assert self._normalise(read_back()) == self._normalise(SEED_ROWS[2:])

    def test_insert_never_overwrites(
        self,
        destination: DestinationConnector,
        object_name: str,
        read_back: Callable[[], list[dict[str, Any]]],
    ) -> None:
        if not self.merges or "insert" not in type(destination).capabilities.operations:
            pytest.skip("destination cannot insert-only")
        self._write(destination, object_name, seed_batch(SEED_ROWS[:1]), "insert")
        changed = [dict(r, name="changed") for r in SEED_ROWS]
        self._write(destination, object_name, seed_batch(changed), "insert", run_id=2)
        expected = SEED_ROWS[:1] + changed[1:]
        assert self._normalise(read_back()) == self._normalise(expected)

    def test_update_touches_only_existing(
        self,
        destination: DestinationConnector,
        object_name: str,
        read_back: Callable[[], list[dict[str, Any]]],
    ) -> None:
        if not self.merges or "update" not in type(destination).capabilities.operations:
            pytest.skip("destination cannot update-only")
        self._write(destination, object_name, seed_batch(SEED_ROWS[:2]), "upsert")
        changed = [dict(r, name="changed") for r in SEED_ROWS]
        rejected = self._write(destination, object_name, seed_batch(changed), "update", run_id=2)
        assert self._normalise(read_back()) == self._normalise(changed[:2])
        # A destination may report the keys it does not have (Census rejects them);
        # if it reports anything, it must be exactly those.
        assert rejected in ([], list(range(2, len(SEED_ROWS))))


__all__ = [
    "SEED_ROWS",
    "SEED_SCHEMA",
    "DestinationConformance",
    "SourceConformance",
    "seed_batch",
]
