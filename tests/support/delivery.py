"""A working sync run in a fresh state store, for tests that drive the engine's
delivery (``engine.writing``) with a real writer and a real snapshot store."""

from __future__ import annotations

from pathlib import Path

from reflow.config import Settings
from reflow.db.tables import Destination, Source, Sync, SyncRun
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize


def working_run(home: Path, destination_type: str, destination_object: str,
                ) -> tuple[Runtime, int, int]:
    """(runtime, sync id, run id) of an upsert sync's run in state ``working``."""
    runtime = Runtime.from_settings(Settings(home=home, secret_key="k"))
    workspace_id = initialize(runtime.engine).workspace_id
    with runtime.session() as session:
        common = {"workspace_id": workspace_id, "credentials_encrypted": "x"}
        source = Source(name="s", type="postgres", **common)
        dest = Destination(name="d", type=destination_type, **common)
        session.add_all([source, dest])
        session.flush()
        sync = Sync(workspace_id=workspace_id, operation="upsert", source_id=source.id,
                    source_object={"type": "model", "id": 1}, destination_id=dest.id,
                    destination_object=destination_object, mappings=[])
        session.add(sync)
        session.flush()
        run = SyncRun(workspace_id=workspace_id, sync_id=sync.id, status="working")
        session.add(run)
        session.flush()
        return runtime, sync.id, run.id
