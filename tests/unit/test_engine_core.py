"""The engine as a core: a plan executed with nothing but what it is given.

No state database, runtime, executor or webhook here: an in-memory source and
destination, a snapshot directory, and a reporter that records what the engine tells
it. What the engine does with real parts is covered by tests/integration and tests/api;
this proves it needs nothing else (and ``lint-imports`` keeps it so)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from reflow.connectors.base import (
    BatchWriter,
    Column,
    DestinationConnector,
    DestinationField,
    DestinationObject,
    RejectedRecord,
    SourceConnector,
    WriteContext,
    WriteResult,
)
from reflow.connectors.errors import TerminalError
from reflow.engine.plan import RunPlan, RunStorage
from reflow.engine.run import execute
from reflow.storage import LocalStorage

#: What the engine must run without: the layers above it.
ABOVE_THE_ENGINE = ("reflow.db", "reflow.services", "reflow.jobs",
                    "reflow.runtime", "reflow.api", "reflow.console", "reflow.cli")


class MemorySource(SourceConnector):
    """A model held as a list of rows; ``read`` ignores the query."""

    service_name = label = documentation_slug = "memory"

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.closed = False

    def test_connection(self) -> list[Any]:
        return []

    def list_tables(self) -> list[Any]:
        return []

    def list_columns(self, table: Any) -> list[Column]:
        return []

    def query_columns(self, sql: str) -> list[Column]:
        return [Column("id", "integer"), Column("email", "text")]

    def table_query(self, table: Any) -> str:
        return "SELECT * FROM people"

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        table = pa.Table.from_pylist(
            self.rows, schema=pa.schema([("id", pa.int64()), ("email", pa.string())])
        )
        yield from table.to_batches(max_chunksize=batch_size or 1000)

    def close(self) -> None:
        self.closed = True


class MemoryWriter(BatchWriter):
    def __init__(self, destination: MemoryDestination, ctx: WriteContext) -> None:
        self.destination = destination
        self.ctx = ctx

    def write(self, batch: pa.RecordBatch, action: Any) -> WriteResult:
        if self.destination.fail_with is not None:
            raise self.destination.fail_with
        rejected = []
        for i, row in enumerate(batch.to_pylist()):
            key = row[self.ctx.key_field]
            if row.get("email") == "refused@example.com":
                rejected.append(RejectedRecord(i, "the destination refuses this address"))
            elif action == "delete":
                self.destination.records.pop(str(key), None)
            else:
                self.destination.records[str(key)] = row
        self.destination.batches.append((action, batch.num_rows))
        return WriteResult(rejected=rejected)


class MemoryDestination(DestinationConnector):
    service_name = label = documentation_slug = "memory"

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.batches: list[tuple[str, int]] = []
        self.fail_with: Exception | None = None
        self.closed = False

    def test_connection(self) -> list[Any]:
        return []

    def list_objects(self) -> list[DestinationObject]:
        fields = (DestinationField("id", "id", "integer", identifier=True),
                  DestinationField("email", "email", "string"))
        return [DestinationObject("people", "people", ("upsert", "mirror"), fields)]

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return MemoryWriter(self, ctx)

    def close(self) -> None:
        self.closed = True


@dataclass
class Reporter:
    """Records what the engine reports; asks to cancel once ``cancel`` is set."""

    cancel: bool = False
    progress_calls: list[dict[str, Any]] = field(default_factory=list)
    logged: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)

    def progress(self, **values: Any) -> bool:
        self.progress_calls.append(values)
        return self.cancel

    def log_records(self, records: list[dict[str, Any]], *, status: str, operation: str) -> None:
        self.logged += [(status, operation, r) for r in records]

    def finish(self, *, status: str, **values: Any) -> None:
        self.finished.append({"status": status, **values})

    @property
    def outcome(self) -> dict[str, Any]:
        assert len(self.finished) == 1, self.finished
        return self.finished[0]


MAPPINGS = (
    {"from": {"type": "column", "data": "id"}, "to": "id", "is_primary_identifier": True},
    {"from": {"type": "column", "data": "email"}, "to": "email", "is_primary_identifier": False},
)


def people(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "email": f"p{i}@example.com"} for i in range(1, n + 1)]


@pytest.fixture
def destination() -> MemoryDestination:
    return MemoryDestination()


def plan_for(tmp_path: Path, rows: list[dict[str, Any]], destination: MemoryDestination,
             *, run_id: int, operation: str = "upsert") -> RunPlan:
    return RunPlan(
        run_id=run_id, sync_id=7, source=MemorySource(rows), destination=destination,
        query="SELECT * FROM people", operation=operation, destination_id=3,
        object_name="people", key_field="id", mappings=MAPPINGS, settings={},
        diff="engine_side",
        storage=RunStorage(LocalStorage(tmp_path / "snapshots"), "sync_7.duckdb", tmp_path),
        batch_size=4,
    )


def run(plan: RunPlan) -> Reporter:
    reporter = Reporter()
    execute(plan, reporter, threading.Event())
    return reporter


def test_first_run_sends_all_and_a_no_change_run_sends_nothing(
    tmp_path: Path, destination: MemoryDestination
) -> None:
    first = plan_for(tmp_path, people(10), destination, run_id=1)
    outcome = run(first).outcome
    assert outcome["status"] == "completed"
    assert (outcome["source_record_count"], outcome["source_record_updates"],
            outcome["records_updated"], outcome["full_sync"]) == (10, 10, 10, True)
    assert destination.records["3"] == {"id": 3, "email": "p3@example.com"}
    assert len(destination.records) == 10
    assert first.source.closed and destination.closed  # type: ignore[attr-defined]
    # The snapshot was checked back into storage, and the next run diffs against it.
    assert (tmp_path / "snapshots" / "sync_7.duckdb").exists()
    assert sorted((tmp_path / "runs" / "1" / "succeeded").glob("part-*.parquet"))

    again = run(plan_for(tmp_path, people(10), destination, run_id=2)).outcome
    assert again["status"] == "completed"
    assert (again["source_record_updates"], again["records_processed"],
            again["full_sync"]) == (0, 0, False)


def test_mirror_updates_changed_rows_and_deletes_removed_ones(
    tmp_path: Path, destination: MemoryDestination
) -> None:
    run(plan_for(tmp_path, people(6), destination, run_id=1, operation="mirror"))
    rows = people(6)[:5]  # id 6 is gone
    rows[1]["email"] = "changed@example.com"
    destination.batches.clear()
    outcome = run(plan_for(tmp_path, rows, destination, run_id=2, operation="mirror")).outcome
    assert outcome["status"] == "completed"
    assert (outcome["source_record_updates"], outcome["source_record_deletes"]) == (1, 1)
    assert destination.batches == [("upsert", 1), ("delete", 1)]
    assert destination.records["2"]["email"] == "changed@example.com"
    assert "6" not in destination.records


def test_invalid_and_rejected_records_go_to_the_reporter(
    tmp_path: Path, destination: MemoryDestination
) -> None:
    rows = [*people(3), {"id": None, "email": "nokey@example.com"},
            {"id": 2, "email": "twice@example.com"}, {"id": 9, "email": "refused@example.com"}]
    reporter = run(plan_for(tmp_path, rows, destination, run_id=1))
    outcome = reporter.outcome
    assert outcome["status"] == "completed"
    statuses = sorted((status, r["identifier"]) for status, _, r in reporter.logged)
    assert statuses == [("DUPLICATE", "2"), ("DUPLICATE", "2"), ("NULL", None),
                        ("rejected", "9")]
    assert (outcome["source_record_invalids"], outcome["records_failed"],
            outcome["records_updated"]) == (3, 1, 2)
    assert set(destination.records) == {"1", "3"}


def test_a_cancel_asked_through_the_reporter_stops_before_any_record_is_sent(
    tmp_path: Path, destination: MemoryDestination
) -> None:
    reporter = Reporter(cancel=True)
    execute(plan_for(tmp_path, people(5), destination, run_id=1), reporter)
    assert reporter.outcome["status"] == "failed" and reporter.outcome["canceled"] is True
    assert destination.records == {} and destination.closed


def test_staging_reports_progress_at_most_every_interval_not_every_batch(
    tmp_path: Path, destination: MemoryDestination
) -> None:
    """Each report is a state-store transaction: once per read batch it took a third of
    a 1M-row no-change re-sync."""
    reporter = run(plan_for(tmp_path, people(400), destination, run_id=1))  # 100 batches
    assert reporter.outcome["status"] == "completed"
    heartbeats = [call for call in reporter.progress_calls if not call]  # staging's own
    assert 1 <= len(heartbeats) < 10, len(heartbeats)


def test_a_failing_destination_fails_the_run_and_the_next_run_resends(
    tmp_path: Path, destination: MemoryDestination
) -> None:
    destination.fail_with = TerminalError("the destination is read-only")
    failed = run(plan_for(tmp_path, people(5), destination, run_id=1)).outcome
    assert failed["status"] == "failed"
    assert failed["error_code"] == "CONNECTOR_ERROR"
    assert failed["error_message"] == "the destination is read-only"

    destination.fail_with = None
    outcome = run(plan_for(tmp_path, people(5), destination, run_id=2)).outcome
    assert outcome["status"] == "completed" and outcome["records_updated"] == 5
    assert len(destination.records) == 5


def test_the_engine_imports_nothing_above_it() -> None:
    """Importing and running the engine loads none of the layers above it (the
    contracts in pyproject.toml check the same statically)."""
    script = (
        "import sys, reflow.engine.run, reflow.engine.plan;"
        f"print(sorted(m for m in sys.modules if m.startswith({ABOVE_THE_ENGINE!r})))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
