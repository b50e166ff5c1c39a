"""What Reflow keeps on disk is readable by its owner only: the SQLite state file (and
its WAL files), REFLOW_HOME, and per-run record files and their directories."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pyarrow as pa

from reflow.config import Settings
from reflow.db import migrate
from reflow.engine.records import SucceededLog
from reflow.runtime import Runtime


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_store_and_home_are_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = Runtime.from_settings(Settings(home=home, secret_key="k" * 32))
    try:
        migrate.upgrade(runtime.engine)
    finally:
        runtime.engine.dispose()
    assert _mode(home) == 0o700
    files = [p for p in home.iterdir() if p.name.startswith("reflow.db")]
    assert files and all(_mode(p) == 0o600 for p in files), [(p, oct(_mode(p))) for p in files]


def test_an_existing_world_readable_state_file_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "reflow.db").touch(mode=0o644)
    os.chmod(tmp_path / "reflow.db", 0o644)
    Runtime.from_settings(Settings(home=tmp_path, secret_key="k" * 32)).engine.dispose()
    assert _mode(tmp_path / "reflow.db") == 0o600


def test_run_record_files_are_owner_only(tmp_path: Path) -> None:
    log = SucceededLog(tmp_path, 7)
    now = dt.datetime.now(dt.UTC)
    log.write(pa.RecordBatch.from_pylist([{"id": 1, "email": "a@x"}]), pa.array([1]),
              operation="upsert", started=now, completed=now)
    run_dir = tmp_path / "runs" / "7"
    for directory in (tmp_path / "runs", run_dir, run_dir / "succeeded"):
        assert _mode(directory) == 0o700, directory
    being_written = list((run_dir / "succeeded").iterdir())
    assert being_written and all(_mode(p) == 0o600 for p in being_written)
    log.close()
    parts = list((run_dir / "succeeded").iterdir())
    assert [p.name for p in parts] == ["part-000001.parquet"]
    assert _mode(parts[0]) == 0o600
