"""A run's end is logged in one line: sync id, run id, status, counts and duration."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from reflow.config import Settings
from reflow.db.tables import Destination, Organization, Source, Sync, SyncRun, Workspace
from reflow.jobs import progress
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize


def test_the_end_of_a_run_is_one_log_line_with_its_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = Runtime.from_settings(Settings(home=tmp_path, secret_key="k" * 32))
    initialize(runtime.engine)
    with Session(runtime.engine) as session, session.begin():
        ws = session.query(Workspace).first()
        org = session.query(Organization).first()
        assert ws is not None and org is not None
        source = Source(workspace_id=ws.id, name="s", type="postgres", credentials_encrypted="x")
        dest = Destination(workspace_id=ws.id, name="d", type="postgres", credentials_encrypted="x")
        session.add_all([source, dest])
        session.flush()
        sync = Sync(workspace_id=ws.id, operation="upsert", source_id=source.id,
                    source_object={"type": "table"}, destination_id=dest.id,
                    destination_object="t", mappings=[])
        session.add(sync)
        session.flush()
        run = SyncRun(workspace_id=ws.id, sync_id=sync.id)
        session.add(run)
        session.flush()
        sync_id, run_id = sync.id, run.id
    assert progress.claim(runtime, run_id)
    with caplog.at_level(logging.INFO, logger="reflow.jobs.progress"):
        progress.finish(runtime, run_id, status="completed", source_record_count=20,
                        source_record_invalids=19, source_record_deletes=0,
                        records_updated=1, records_failed=0)
    lines = [r.getMessage() for r in caplog.records if r.name == "reflow.jobs.progress"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"run {run_id} of sync {sync_id} completed in " in line
    assert "extracted=20 invalid=19 failed=0 updated=1 deleted=0" in line
    runtime.engine.dispose()
