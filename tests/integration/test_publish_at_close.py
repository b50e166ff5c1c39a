"""A writer that publishes only at close (one file per run): if the run fails, the
file is not published and no record is committed to the snapshot, so the next run
sends every record again; when the run succeeds, the snapshot is committed only after
the file is in place. Real DuckDB snapshot, real files, real state store."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from reflow.config import Settings
from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.files import LocalFilesDestination
from reflow.db.tables import Destination, Source, Sync, SyncRun
from reflow.engine.records import SucceededLog
from reflow.engine.snapshot import HASH, KEY, SnapshotStore
from reflow.engine.writing import Delivery, deliver, finish_writer
from reflow.jobs.progress import StateReporter
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize


@pytest.fixture
def run_id(tmp_path: Path) -> tuple[Runtime, int]:
    runtime = Runtime.from_settings(Settings(home=tmp_path / "home", secret_key="k"))
    result = initialize(runtime.engine)
    with runtime.session() as session:
        common = {"workspace_id": result.workspace_id, "credentials_encrypted": "x"}
        source = Source(name="s", type="postgres", **common)
        dest = Destination(name="d", type="local_files", **common)
        session.add_all([source, dest])
        session.flush()
        sync = Sync(workspace_id=result.workspace_id, operation="upsert", source_id=source.id,
                    source_object={"type": "model", "id": 1}, destination_id=dest.id,
                    destination_object="people.csv", mappings=[])
        session.add(sync)
        session.flush()
        run = SyncRun(workspace_id=result.workspace_id, sync_id=sync.id, status="working")
        session.add(run)
        session.flush()
        return runtime, run.id


def _batch(ids: range) -> pa.RecordBatch:
    keys = [str(i) for i in ids]
    return pa.RecordBatch.from_pydict({
        "id": list(ids), "name": [f"p{i}" for i in ids], KEY: keys,
        HASH: pa.array(ids, pa.uint64()),
    })


def _delivery(runtime: Runtime, run_id: int, directory: Path, store: SnapshotStore) -> Delivery:
    connector = LocalFilesDestination(
        LocalFilesDestination.config_model.model_validate({"directory": str(directory)})
    )
    writer = connector.open_writer(WriteContext(1, run_id, "people.csv", "id", ("id", "name")))
    assert writer.durable_on_write is False
    return Delivery(StateReporter(runtime, run_id), run_id, writer, store, threading.Event(), {},
                    SucceededLog(runtime.settings.home, run_id))


def test_failed_run_publishes_nothing_and_commits_nothing(
    run_id: tuple[Runtime, int], tmp_path: Path
) -> None:
    runtime, rid = run_id
    out = tmp_path / "out"
    out.mkdir()
    store = SnapshotStore(tmp_path / "snap.duckdb")
    try:
        d = _delivery(runtime, rid, out, store)
        deliver(d, _batch(range(1, 6)), "upsert", operation="upsert")
        deliver(d, _batch(range(6, 11)), "upsert", operation="upsert")
        finish_writer(d, failed=True)
        assert not (out / "people.csv").exists()
        assert not store.delivered()

        d = _delivery(runtime, rid, out, store)
        deliver(d, _batch(range(1, 11)), "upsert", operation="upsert")
        assert not store.delivered()
        finish_writer(d, failed=False)
        rows = pacsv.read_csv(out / "people.csv").to_pylist()
        assert sorted(r["id"] for r in rows) == list(range(1, 11))
        assert len(store.delivered()) == 10
    finally:
        store.close()
