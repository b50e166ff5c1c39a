"""The succeeded-records log: acknowledged batches appended to Parquet parts, each part
completed (renamed into place and handed to ``on_part``) at a size, an age, a change
of columns, and at the end of the run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reflow.engine import records
from reflow.engine.records import IDENTIFIER, OPERATION, SucceededLog

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def _batch(start: int, n: int) -> tuple[pa.RecordBatch, pa.Array]:
    ids = list(range(start, start + n))
    payload = pa.RecordBatch.from_pydict({"id": ids, "email": [f"u{i}@x" for i in ids]})
    return payload, pa.array(ids)


def _write(log: SucceededLog, start: int, n: int, operation: str = "upsert") -> None:
    payload, keys = _batch(start, n)
    log.write(payload, keys, operation=operation, started=NOW, completed=NOW)


def _read(log: SucceededLog) -> list[Path]:
    return sorted(log.directory.glob("part-*.parquet"))


def test_batches_share_a_part_until_the_run_ends(tmp_path: Path) -> None:
    shared: list[str] = []
    log = SucceededLog(tmp_path, 1, on_part=lambda p: shared.append(p.name))
    for i in range(5):
        _write(log, i * 100, 100)
    assert _read(log) == [] and shared == []  # nothing half-written is visible
    log.close()
    log.close()  # nothing left to complete
    assert shared == ["part-000001.parquet"]
    table = pq.read_table(_read(log)[0])
    assert table.column(IDENTIFIER).to_pylist() == [str(i) for i in range(500)]
    assert table.column("email").to_pylist()[499] == "u499@x"


def test_a_part_is_completed_at_its_size(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "PART_BYTES", 1)
    shared: list[str] = []
    log = SucceededLog(tmp_path, 1, on_part=lambda p: shared.append(p.name))
    _write(log, 0, 10)
    _write(log, 10, 10)
    assert shared == ["part-000001.parquet", "part-000002.parquet"]
    log.close()
    assert len(_read(log)) == 2


def test_a_part_is_completed_at_its_age(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: clock[0])
    log = SucceededLog(tmp_path, 1)
    _write(log, 0, 10)
    clock[0] += records.PART_SECONDS - 1
    _write(log, 10, 10)
    assert _read(log) == []
    clock[0] += 1
    _write(log, 20, 10)  # the part was begun PART_SECONDS ago: readers get it now
    assert [pq.read_table(p).num_rows for p in _read(log)] == [30]


def test_deletions_of_a_mirror_go_to_a_part_of_their_own(tmp_path: Path) -> None:
    log = SucceededLog(tmp_path, 1)
    _write(log, 0, 10)
    keys = pa.array(["3", "4"])
    log.write(pa.RecordBatch.from_arrays([keys], names=["id"]), keys,
              operation="delete", started=NOW, completed=NOW)
    log.close()
    first, second = (pq.read_table(p) for p in _read(log))
    assert first.num_rows == 10 and "email" in first.column_names
    assert second.column(OPERATION).to_pylist() == ["delete", "delete"]
